"""A request's body as model inputs, or a BadRequest with its status and a one-line reason.

The route reads the body (at most the upload limit, read_body); the rest runs on the
preprocessing threads: upload() decodes an image as predict decodes a file and checks its
metadata as predict checks --age/--sex/--site; tensors() reads the Open Inference Protocol's
JSON tensors, as Triton takes them (FP32, shape, and the data flat in row-major order or
nested). Nothing from a request is ever used as a path."""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import ClientDisconnect, Request

from skinlesion.data.images import decode_or_reason
from skinlesion.data.metadata import FIELDS, check_metadata, encode_metadata
from skinlesion.errors import DataError
from skinlesion.model.info import ModelInfo
from skinlesion.predict.inputs import image_decoder
from skinlesion.predict.onnx_classifier import INPUTS, OUTPUT
from skinlesion.serve.model import TensorImage, Upload

# the upload form's metadata fields, and the metadata FIELDS each sets
FORM_FIELDS = {"age": "age_approx", "sex": "sex", "site": "anatom_site_general"}
UPLOAD_TYPES = ("image/", "application/octet-stream")  # a browser sends the latter for an unknown suffix


class BadRequest(Exception):
    """What is wrong with a request: the HTTP `status` (4xx) and a one-line `reason`."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, " ".join(reason.split())


def require_content_type(request: Request, expected: str, hint: str) -> None:
    """A 415 unless the request's Content-Type is `expected`."""
    given = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if given != expected:
        raise BadRequest(415, f"Content-Type is {given or 'not given'}; {hint}")


# of a body found too large, at most this much more is read and dropped before the 413, so that
# an ordinary client, still sending, reads the answer instead of a connection reset
DRAIN_BYTES = 8 * 1024 * 1024


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, or a 413 once it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    too_large = f"this server takes bodies of at most {limit} bytes (serve --max-upload-mb)"
    chunks, size, stream = [], 0, request.stream()
    try:
        if declared is not None and declared.isdigit() and int(declared) > limit:
            if int(declared) <= limit + DRAIN_BYTES:
                await _drain(stream, limit + DRAIN_BYTES)
            raise BadRequest(413, f"the body is {int(declared)} bytes; {too_large}")
        async for chunk in stream:
            size += len(chunk)
            if size > limit:
                await _drain(stream, DRAIN_BYTES)
                raise BadRequest(413, f"the body is over {limit} bytes; {too_large}")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadRequest(400, "the client closed the connection before sending the whole body") from None
    return b"".join(chunks)


async def _drain(stream: AsyncIterator[bytes], most: int) -> None:
    """Read and drop what is left of the body `stream`, up to `most` bytes."""
    dropped = 0
    async for chunk in stream:
        dropped += len(chunk)
        if dropped > most:
            return


def upload(data: bytes, name: str, fields: Mapping[str, str], info: ModelInfo) -> tuple[Upload, list[str]]:
    """The image file `data` (named `name`) with the form's metadata `fields`, decoded and
    checked for the model `info` describes, and warnings for the client: metadata that a
    model without it ignores, or that is missing for one that takes it."""
    row, warnings = form_metadata(fields, info)
    pixels, reason = decode_or_reason(lambda: io.BytesIO(data), image_decoder(info))
    if pixels is None:  # PIL names the file it was given: here a buffer, not worth naming
        raise BadRequest(422, "image: " + re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "the upload", reason))
    encoded = None if row is None else encode_metadata(pd.DataFrame([row]), "metadata")
    return Upload(name=name, pixels=pixels, row=row, encoded=encoded), warnings


def form_metadata(fields: Mapping[str, str], info: ModelInfo) -> tuple[dict[str, str] | None, list[str]]:
    """The checked metadata row (FIELDS) of the form `fields` age, sex and site, as predict
    checks --age/--sex/--site (a 422 names the field), and warnings; None for a model that
    takes none."""
    given = {FORM_FIELDS[key]: value.strip() for key, value in fields.items() if value.strip()}
    try:
        row = check_metadata(pd.DataFrame([{**dict.fromkeys(FIELDS, ""), **given}]), "metadata").iloc[0].to_dict()
    except DataError as error:
        message = str(error)
        for form_name, field in FORM_FIELDS.items():
            message = message.replace(field, form_name)
        raise BadRequest(422, message) from None
    if not info.uses_metadata:
        named = [key for key, value in fields.items() if value.strip()]
        return None, [f"the model takes no metadata: {', '.join(named)} ignored"] if named else []
    missing = [form_name for form_name, field in FORM_FIELDS.items() if not row[field]]
    warnings = [f"{', '.join(missing)} not given: treated as missing, which lowers the model's accuracy"]
    return row, warnings if missing else []


class _Tensor(BaseModel):
    """One tensor of the Open Inference Protocol's JSON."""

    model_config = ConfigDict(extra="forbid")
    name: str
    shape: list[int] = Field(min_length=1, max_length=8)
    datatype: Literal["FP32"]
    data: list[Any]
    parameters: dict[str, Any] | None = None


class _RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["probabilities"]
    parameters: dict[str, Any] | None = None


class _InferRequest(BaseModel):
    """The protocol's inference request (JSON tensors; the binary extension is not taken)."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[_Tensor] = Field(min_length=1, max_length=2)
    outputs: list[_RequestedOutput] | None = None


def tensors(body: bytes, info: ModelInfo) -> tuple[list[TensorImage], str | None]:
    """The images of an inference request's JSON `body` for the model `info` describes, and
    the request's id; a 400 says what does not fit."""
    try:
        parsed = _InferRequest.model_validate(json.loads(body, parse_constant=_no_constant))
    except (ValueError, UnicodeDecodeError) as error:  # not JSON, or JSON of another shape
        raise BadRequest(400, _json_problem(error)) from None
    given = {tensor.name: tensor for tensor in parsed.inputs}
    expected = INPUTS[: 2 if info.uses_metadata else 1]
    if sorted(given) != sorted(expected) or len(given) != len(parsed.inputs):
        raise BadRequest(400, f"inputs are {[t.name for t in parsed.inputs]}; the model takes {list(expected)}")
    size = info.image_size
    images = _array(given[INPUTS[0]], (3, size, size))
    metadata = _array(given[INPUTS[1]], (len(info.metadata),)) if info.uses_metadata else None
    if metadata is not None and len(metadata) != len(images):
        raise BadRequest(400, f"{len(images)} images but {len(metadata)} rows of metadata")
    rows = [None] * len(images) if metadata is None else list(metadata)
    return [TensorImage(image=image, metadata=row) for image, row in zip(images, rows)], parsed.id


def _array(tensor: _Tensor, item_shape: tuple[int, ...]) -> np.ndarray:
    """The tensor's data as float32 of shape (N, *item_shape), N >= 1, every value finite."""
    wanted = f"[N, {', '.join(map(str, item_shape))}]"
    if len(tensor.shape) != 1 + len(item_shape) or tuple(tensor.shape[1:]) != item_shape or tensor.shape[0] < 1:
        raise BadRequest(400, f"{tensor.name}: shape {tensor.shape}; the model takes {wanted} with N >= 1")
    try:
        values = np.asarray(tensor.data, dtype=np.float32)
    except (ValueError, TypeError) as error:
        raise BadRequest(400, f"{tensor.name}: data is not an array of numbers ({error})") from None
    if values.size != math.prod(tensor.shape):
        raise BadRequest(400, f"{tensor.name}: {values.size} values for shape {tensor.shape}")
    if not np.isfinite(values).all():
        raise BadRequest(400, f"{tensor.name}: data holds a value that is not a finite number")
    return values.reshape(tensor.shape)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _json_problem(error: Exception) -> str:
    """A one-line reason for a body that is not the protocol's JSON: pydantic's first error
    with where it is (inputs.0.shape), or the JSON decoder's message."""
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        return f"not an inference request: {where}: {first['msg']}{more}"
    return f"not JSON: {error}"


def infer_response(model_name: str, version: str, request_id: str | None, rows: list[np.ndarray]) -> dict:
    """The protocol's inference response: probabilities (N, C), flat in row-major order."""
    probabilities = np.stack(rows)
    response = {
        "model_name": model_name,
        "model_version": version,
        "outputs": [
            {
                "name": OUTPUT,
                "datatype": "FP32",
                "shape": list(probabilities.shape),
                "data": probabilities.ravel().tolist(),
            }
        ],
    }
    return response if request_id is None else {**response, "id": request_id}
