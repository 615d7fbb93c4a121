"""The server's routes (Starlette) and how it runs (uvicorn).

Open Inference Protocol (KServe v2): GET /v2/health/live, /v2/health/ready, /v2/models/NAME
(and /ready), POST /v2/models/NAME[/versions/VERSION]/infer. Beside them: POST /predict
(an uploaded image, answered as `skinlesion predict` answers), GET /metrics (Prometheus),
GET / (the upload page) and GET /model-card. A bad request is a 4xx with {"error": reason}.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from skinlesion.serve import requests
from skinlesion.serve.batching import Batching, MicroBatcher
from skinlesion.serve.metrics import CONTENT_TYPE, Metrics
from skinlesion.serve.model import ServedModel
from skinlesion.serve.page import page_html
from skinlesion.serve.requests import BadRequest

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "::1", "localhost")
UPLOAD_FIELDS = ("image", "top", "cam", *requests.FORM_FIELDS)


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """How the server batches (Batching), the largest body it reads in bytes, the threads
    that decode uploads and parse JSON off the event loop, and how long a SIGTERM waits for
    requests in flight."""

    batching: Batching = Batching()
    max_body: int = 20 * 1024 * 1024
    threads: int = 2
    graceful_seconds: int = 30


class Endpoints:
    """The routes of one server: `served` answered with `settings`, counted in `metrics`."""

    def __init__(self, served: ServedModel, settings: ServeSettings, metrics: Metrics):
        self.served, self.settings, self.metrics = served, settings, metrics
        self.page, self.policy = page_html(served)
        self.ready = False
        self._preprocess: ThreadPoolExecutor | None = None
        self._inference: ThreadPoolExecutor | None = None
        self._predict: MicroBatcher | None = None
        self._infer: MicroBatcher | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette):
        """Start the threads and batchers; after uvicorn has let every request in flight
        finish (a SIGTERM's graceful shutdown), stop them."""
        self._preprocess = ThreadPoolExecutor(self.settings.threads, thread_name_prefix="serve-preprocess")
        self._inference = ThreadPoolExecutor(1, thread_name_prefix="serve-inference")
        common = dict(settings=self.settings.batching, executor=self._inference, metrics=self.metrics)
        self._predict = MicroBatcher(self.served.predict, route="/predict", **common)
        self._infer = MicroBatcher(self.served.infer, route="/v2/models/{name}/infer", **common)
        self._predict.start()
        self._infer.start()
        self.ready = True
        log.info("serving %s (version %s)", self.served.path, self.served.version)
        try:
            yield
        finally:
            self.ready = False
            await self._predict.stop()
            await self._infer.stop()
            self._preprocess.shutdown(wait=True)
            self._inference.shutdown(wait=True)

    async def _off_loop(self, work: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._preprocess, work, *args)

    def routes(self) -> list[Route]:
        return [
            Route("/", self.index),
            Route("/model-card", self.model_card),
            Route("/metrics", self.exposition),
            Route("/predict", self.predict, methods=["POST"]),
            Route("/v2", self.server_metadata),
            Route("/v2/health/live", self.live),
            Route("/v2/health/ready", self.readiness),
            Route("/v2/models/{name}", self.model_metadata),
            Route("/v2/models/{name}/ready", self.model_ready),
            Route("/v2/models/{name}/infer", self.infer, methods=["POST"]),
            Route("/v2/models/{name}/versions/{version}/infer", self.infer, methods=["POST"]),
        ]

    async def index(self, request: Request) -> Response:
        return HTMLResponse(self.page, headers={"Content-Security-Policy": self.policy})

    async def model_card(self, request: Request) -> Response:
        if self.served.model_card is None:
            raise BadRequest(404, f"no model_card.html beside {self.served.path.name}")
        return FileResponse(self.served.model_card, media_type="text/html")

    async def exposition(self, request: Request) -> Response:
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE)

    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def readiness(self, request: Request) -> Response:
        return JSONResponse({"ready": self.ready}, status_code=200 if self.ready else 503)

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse({"name": "skinlesion", "version": _package_version(), "extensions": []})

    def _model(self, request: Request) -> ServedModel:
        """The served model, if the path names it (and its version, where it gives one)."""
        name, version = request.path_params["name"], request.path_params.get("version", self.served.version)
        if name != self.served.name:
            raise BadRequest(404, f"no model {name!r}: this server serves {self.served.name!r}")
        if version != self.served.version:
            raise BadRequest(404, f"no version {version!r} of {name!r}: it is at {self.served.version!r}")
        return self.served

    async def model_metadata(self, request: Request) -> Response:
        return JSONResponse(self._model(request).metadata())

    async def model_ready(self, request: Request) -> Response:
        self._model(request)
        return JSONResponse({"name": self.served.name, "ready": self.ready}, status_code=200 if self.ready else 503)

    async def infer(self, request: Request) -> Response:
        served = self._model(request)
        requests.require_content_type(request, "application/json", "send the inference request as JSON")
        body = await requests.read_body(request, self.settings.max_body)
        images, request_id = await self._off_loop(requests.tensors, body, served.info)
        rows = await self._infer.submit(images)
        return JSONResponse(requests.infer_response(served.name, served.version, request_id, rows))

    async def predict(self, request: Request) -> Response:
        hint = "upload the image as multipart/form-data (field image; optional age, sex, site, top, cam)"
        requests.require_content_type(request, "multipart/form-data", hint)
        body = await requests.read_body(request, self.settings.max_body)
        fields, file = await _form(request, body)
        top = _top(fields.pop("top", "3"), len(self.served.info.classes))
        cam = fields.pop("cam", "") not in ("", "0", "false")
        if cam and not self.served.explains:
            raise BadRequest(422, "cam: Grad-CAM needs the model file (.pt); this server runs its ONNX export")
        name = file.filename or "upload"
        try:
            data = await file.read()
        finally:
            await file.close()  # the parser spools a large upload to a temporary file
        upload, warnings = await self._off_loop(requests.upload, data, name, fields, self.served.info)
        if cam:  # through the inference thread, alone: Grad-CAM's hooks must not see another batch
            loop = asyncio.get_running_loop()
            prediction, overlay = await loop.run_in_executor(self._inference, self.served.explain, upload)
        else:
            [prediction], overlay = await self._predict.submit([upload]), None
        answer = {
            "model": self.served.name,
            "version": self.served.version,
            "image": prediction.image,
            "predicted": prediction.predicted,
            "top": [{"class": name, "probability": p} for name, p in prediction.top(top)],
            "probabilities": prediction.probabilities,
            "unknown_score": prediction.unknown_score,
            "unknown": prediction.unknown,
            "metadata": prediction.metadata,
            "warnings": warnings,
        }
        if overlay is not None:
            answer["cam"] = "data:image/png;base64," + base64.b64encode(overlay).decode()
        return JSONResponse(answer)


async def _form(request: Request, body: bytes) -> tuple[dict[str, str], UploadFile]:
    """The upload form's text fields and its one image file; a 4xx says what is wrong with it."""

    async def chunks():
        yield body

    try:
        form = await MultiPartParser(request.headers, chunks(), max_files=1, max_fields=len(UPLOAD_FIELDS)).parse()
    except MultiPartException as error:
        raise BadRequest(400, f"not a readable multipart form: {error.message}") from None
    unknown = sorted(set(form.keys()) - set(UPLOAD_FIELDS))
    if unknown:
        raise BadRequest(400, f"unknown form fields {unknown}; the form takes {list(UPLOAD_FIELDS)}")
    file = form.get("image")
    if not isinstance(file, UploadFile):
        raise BadRequest(400, "image: no file in the form (a file field named image)")
    content_type = (file.content_type or "application/octet-stream").lower()
    if not content_type.startswith(requests.UPLOAD_TYPES):
        raise BadRequest(415, f"image: Content-Type is {content_type}; upload an image (image/jpeg, image/png, ...)")
    fields = {key: value for key, value in form.items() if key != "image"}
    if not all(isinstance(value, str) for value in fields.values()):
        raise BadRequest(400, f"only image is a file; {sorted(fields)} are text fields")
    return fields, file


def _top(text: str, classes: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0  # not a whole number ("2.5", "²"): refused below
    if not 1 <= value <= classes:
        raise BadRequest(422, f"top is {text!r}; give a whole number from 1 to {classes}")
    return value


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("skin-lesion-dvc")
    except PackageNotFoundError:
        return "unknown"


class RequestMetrics:
    """ASGI middleware: each HTTP request's status and latency, under the route it matched
    (its template, so that paths do not multiply the series), in `metrics`."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, routes: list[Route]):
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = next((r.path for r in self.routes if r.matches(scope)[0] != Match.NONE), "other")
        started, status = time.perf_counter(), 500

        async def send_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight += 1
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_flight -= 1
            self.metrics.request_done(route, status, time.perf_counter() - started)


async def _bad_request(request: Request, error: BadRequest) -> Response:
    return JSONResponse({"error": error.reason}, status_code=error.status)


async def _http_error(request: Request, error: HTTPException) -> Response:
    return JSONResponse({"error": error.detail}, status_code=error.status_code, headers=error.headers)


def create_app(served: ServedModel, settings: ServeSettings, metrics: Metrics | None = None) -> ASGIApp:
    """The ASGI app serving `served`: Starlette's routes inside the metrics middleware."""
    metrics = metrics or Metrics()
    endpoints = Endpoints(served, settings, metrics)
    routes = endpoints.routes()
    app = Starlette(
        routes=routes,
        lifespan=endpoints.lifespan,
        exception_handlers={BadRequest: _bad_request, HTTPException: _http_error},
    )
    return RequestMetrics(app, metrics=metrics, routes=routes)


def serve(served: ServedModel, settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Answer on host:port until SIGINT or SIGTERM, which let requests in flight finish (for at
    most settings.graceful_seconds) before the process exits."""
    if host not in LOOPBACK:
        log.warning("serving on %s: other machines can reach it, and it asks no one for credentials", host)
    config = uvicorn.Config(
        create_app(served, settings),
        host=host,
        port=port,
        log_config=None,  # the command's logging, as every skinlesion command logs
        timeout_graceful_shutdown=settings.graceful_seconds,
        lifespan="on",
    )
    uvicorn.Server(config).run()
