"""The model a server answers with: skinlesion.predict's Classifier for the model file or its
ONNX export, its name (the file's stem) and version (a prefix of the file's sha256), what its
inputs must be, and the three ways the routes call it. Every call runs on the server's one
inference thread (skinlesion.serve.batching says why)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from skinlesion.digest import file_sha256
from skinlesion.errors import MissingExtraError
from skinlesion.model.info import TTA, ModelInfo
from skinlesion.predict.onnx_classifier import INFO_KEY, INPUTS, OUTPUT, OnnxClassifier
from skinlesion.predict.records import Prediction
from skinlesion.predict.run import Classifier, load_classifier

# the name a Grad-CAM overlay is saved under in its temporary folder: never the client's
CAM_NAME = "upload"
VERSION_CHARS = 12  # of the sha256, as git abbreviates a commit


def require_serve_extra() -> None:
    """A MissingExtraError naming the extra to install when the server's packages are absent."""
    absent = [name for name in ("starlette", "uvicorn", "multipart") if importlib.util.find_spec(name) is None]
    if absent:
        raise MissingExtraError(
            f"skinlesion serve needs {', '.join(absent)}, which are not installed: install the optional extra, "
            'pip install -e ".[serve]" in the checkout'
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Upload:
    """One uploaded image, decoded as predict decodes a file: `name` as the client gave it
    (never a path here), `pixels` (S, S, 3) uint8, the checked metadata `row` (FIELDS; None
    for a model without metadata) and its (1, F) float32 `encoded` form."""

    name: str
    pixels: np.ndarray
    row: dict[str, str] | None = None
    encoded: np.ndarray | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class TensorImage:
    """One image of an infer request, preprocessed by the client: (3, S, S) float32 `image`
    and, for a model that takes it, its (F,) float32 `metadata`."""

    image: np.ndarray
    metadata: np.ndarray | None = None


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class ServedModel:
    """`classify` loaded from `path`, served as `name` at `version`."""

    classify: Classifier
    path: Path
    name: str
    version: str

    @classmethod
    def load(cls, path: Path, *, device: str = "auto", tta: TTA = "none") -> ServedModel:
        """The model file or export `path` (errors as load_classifier's: they name `device`)."""
        if not path.is_file():
            raise FileNotFoundError(f"{path}: model file not found")
        version = file_sha256(path)[:VERSION_CHARS]
        return cls(classify=load_classifier(path, device=device, tta=tta), path=path, name=path.stem, version=version)

    @property
    def info(self) -> ModelInfo:
        return self.classify.info

    @property
    def explains(self) -> bool:
        """Whether Grad-CAM overlays can be had: the model file's network, not an export."""
        return not isinstance(self.classify, OnnxClassifier)

    @property
    def model_card(self) -> Path | None:
        """The model card the model-card stage writes beside the model file, if it is there."""
        card = self.path.parent / "model_card.html"
        return card if card.is_file() else None

    def description(self) -> dict[str, Any]:
        """What a client needs to preprocess for the infer route, as the export writes it in an
        ONNX file's metadata (skinlesion.export.onnx_graph.description), values decoded."""
        if isinstance(self.classify, OnnxClassifier):
            stored = dict(self.classify.session.get_modelmeta().custom_metadata_map)
        else:
            from skinlesion.export.onnx_graph import description

            stored = description(self.info)
        stored.pop(INFO_KEY, None)
        return {key: _decoded(value) for key, value in stored.items()} | {"tta": self.classify.tta}

    def metadata(self) -> dict[str, Any]:
        """The Open Inference Protocol's model metadata."""
        info = self.info
        inputs = [{"name": INPUTS[0], "datatype": "FP32", "shape": [-1, 3, info.image_size, info.image_size]}]
        if info.uses_metadata:
            inputs.append({"name": INPUTS[1], "datatype": "FP32", "shape": [-1, len(info.metadata)]})
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "onnxruntime_onnx" if isinstance(self.classify, OnnxClassifier) else "pytorch",
            "inputs": inputs,
            "outputs": [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, len(info.classes)]}],
            "parameters": self.description(),
        }

    def predict(self, uploads: list[Upload]) -> list[Prediction]:
        """The Predictions of `uploads`, in one call of the classifier, as classify_batches makes them."""
        metadata = np.concatenate([upload.encoded for upload in uploads]) if self.info.uses_metadata else None
        probabilities = self.classify([upload.pixels for upload in uploads], [u.name for u in uploads], metadata)
        return [Prediction.of(upload.name, row, self.info, upload.row) for upload, row in zip(uploads, probabilities)]

    def explain(self, upload: Upload) -> tuple[Prediction, bytes]:
        """The Prediction of `upload` and the PNG of its Grad-CAM overlay, as predict --cam saves it."""
        with tempfile.TemporaryDirectory(prefix="skinlesion-serve-cam-") as folder:
            classify = dataclasses.replace(self.classify, cam_dir=Path(folder))
            probabilities = classify([upload.pixels], [CAM_NAME], upload.encoded)
            overlay = (Path(folder) / f"{CAM_NAME}.png").read_bytes()
        return Prediction.of(upload.name, probabilities[0], self.info, upload.row), overlay

    def infer(self, images: list[TensorImage]) -> list[np.ndarray]:
        """The (C,) probabilities of each preprocessed image: the graph's output, with the
        classifier's temperature and TTA, as its call computes them after normalising."""
        batch = np.ascontiguousarray(np.stack([item.image for item in images]))
        metadata = np.stack([item.metadata for item in images]) if self.info.uses_metadata else None
        return list(self.classify.probabilities(batch, metadata))


def _decoded(value: str) -> Any:
    """A metadata entry as the value it writes (a JSON list or number), else the text itself."""
    try:
        return json.loads(value)
    except ValueError:
        return value
