"""skinlesion serve: the routes answer what `skinlesion predict`'s library computes for the same
images and model, concurrent requests share forward passes and are counted, each bad request
is a 4xx with a one-line reason after which the server still answers, the command serves an
ONNX export and finishes a request in flight on SIGTERM, and the page uploads an image
through its own script in headless Chromium. All traffic goes to 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
import uvicorn
from conftest import REPO, model_info
from PIL import Image

from skinlesion.cli import main as skinlesion
from skinlesion.data.images import load_image
from skinlesion.export.onnx_graph import description
from skinlesion.model.architectures import build_model
from skinlesion.model.info import ModelInfo
from skinlesion.model.model_file import save_checkpoint
from skinlesion.predict.records import Prediction
from skinlesion.predict.run import classify_batches, load_classifier
from skinlesion.serve.app import ServeSettings, create_app
from skinlesion.serve.batching import Batching, MicroBatcher
from skinlesion.serve.metrics import Metrics
from skinlesion.serve.model import ServedModel

SIZE = 32  # DenseNet121's smallest input: a forward pass in milliseconds
# urllib would send requests through a proxy set in the environment: these go to 127.0.0.1 only
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("serve") / "model.pt"
    torch.manual_seed(0)
    save_checkpoint(
        path, build_model("densenet121", 8, "none").eval(), model_info(image_size=SIZE, unknown_threshold=0.5)
    )
    return path


@pytest.fixture(scope="module")
def served(model_file) -> ServedModel:
    return ServedModel.load(model_file, device="cpu")


@pytest.fixture(scope="module")
def files(shared_data) -> list[Path]:
    return sorted((shared_data / "isic2019-mini" / "ISIC_2019_Training_Input").glob("*.jpg"))[:8]


def library_predictions(model: Path, files: list[Path]) -> dict[str, Prediction]:
    """What `skinlesion predict --model MODEL FILES` computes, by file name."""
    classify = load_classifier(model, device="cpu")
    return {Path(p.image).name: p for batch in classify_batches(classify, files, batch_size=8) for p in batch}


@pytest.fixture(scope="module")
def expected(model_file, files) -> dict[str, Prediction]:
    return library_predictions(model_file, files)


@dataclasses.dataclass
class Running:
    url: str
    metrics: Metrics


@contextlib.contextmanager
def running(served: ServedModel, **settings: Any) -> Iterator[Running]:
    """The app serving `served` on 127.0.0.1 (a free port) in a thread of this process."""
    metrics = Metrics()
    app = create_app(served, ServeSettings(**settings), metrics)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Running(f"http://127.0.0.1:{port}", metrics)
    finally:
        server.should_exit = True
        thread.join(30)


def call(url: str, body: bytes | None = None, content_type: str | None = None) -> tuple[int, Any]:
    """Status and answer (decoded JSON, else text) of a GET, or a POST of `body`."""
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    try:
        with HTTP.open(request, timeout=60) as response:
            status, raw, kind = response.status, response.read(), response.headers.get_content_type()
    except urllib.error.HTTPError as error:
        status, raw, kind = error.code, error.read(), error.headers.get_content_type()
    return status, json.loads(raw) if kind == "application/json" else raw.decode()


def form(fields: dict[str, str], image: bytes | None, name="lesion.jpg", kind="image/jpeg") -> tuple[bytes, str]:
    """A multipart/form-data body with text `fields` and the file `image`, and its Content-Type."""
    boundary, parts = "serve-test-boundary", []
    for key, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
    if image is not None:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
        parts.append(f"{head}Content-Type: {kind}\r\n\r\n".encode() + image + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def upload(url: str, image: bytes | None, **fields: str) -> tuple[int, Any]:
    return call(f"{url}/predict", *form(fields, image))


def preprocessed(file: Path, parameters: dict) -> list:
    """What a client of the infer route sends for `file`, made from the model's metadata only."""
    pixels = load_image(file, parameters["input_size"]).astype(np.float32) / 255
    normalised = (pixels - np.float32(parameters["mean"])) / np.float32(parameters["std"])
    return normalised.transpose(2, 0, 1).tolist()


def infer_body(images: list, name: str = "images", shape: list | None = None, **changes) -> bytes:
    tensor = {"name": name, "shape": shape or list(np.shape(images)), "datatype": "FP32", "data": images}
    return json.dumps({"id": "r1", "inputs": [{**tensor, **changes}]}).encode()


def assert_same(answer: dict, prediction: Prediction) -> None:
    """`answer` of POST /predict says what `prediction`, skinlesion predict's, says."""
    assert list(answer["probabilities"]) == list(prediction.probabilities)
    given, wanted = np.array(list(answer["probabilities"].values())), np.array(list(prediction.probabilities.values()))
    assert np.abs(given - wanted).max() < 1e-5
    assert answer["unknown_score"] == pytest.approx(prediction.unknown_score, abs=1e-5)
    assert answer["unknown"] == prediction.unknown and answer["predicted"] == prediction.predicted
    assert [entry["class"] for entry in answer["top"]] == [name for name, _ in prediction.top(len(answer["top"]))]


def exposition_value(text: str, sample: str) -> float:
    """The value of the line of `sample` (a metric name with its labels) in /metrics' text."""
    [value] = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(sample + " ")]
    return float(value)


def test_the_routes_answer_what_skinlesion_predict_computes(served, model_file, files, expected):
    with running(served, batching=Batching(max_batch=8, max_wait=0.01)) as server:
        assert call(f"{server.url}/v2/health/live") == (200, {"live": True})
        assert call(f"{server.url}/v2/health/ready") == (200, {"ready": True})

        status, metadata = call(f"{server.url}/v2/models/model")
        version = hashlib.sha256(model_file.read_bytes()).hexdigest()[:12]
        assert status == 200 and metadata["name"] == "model" and metadata["versions"] == [version]
        assert metadata["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 3, SIZE, SIZE]}]
        parameters = metadata["parameters"]
        assert parameters["classes"] == list(served.info.classes) and parameters["input_size"] == SIZE
        assert parameters["mean"] == list(served.info.mean) and parameters["std"] == list(served.info.std)

        for file in files[:4]:
            status, answer = upload(server.url, file.read_bytes(), top="4")
            assert status == 200 and len(answer["top"]) == 4, answer
            assert_same(answer, expected[file.name])

        # the infer route: tensors preprocessed by the client from the metadata alone
        body = infer_body([preprocessed(file, parameters) for file in files[:3]])
        status, answer = call(f"{server.url}/v2/models/model/versions/{version}/infer", body, "application/json")
        assert status == 200 and answer["id"] == "r1" and answer["model_version"] == version
        [output] = answer["outputs"]
        assert output["name"] == "probabilities" and output["shape"] == [3, 8] and output["datatype"] == "FP32"
        rows = np.array(output["data"]).reshape(3, 8)
        for row, file in zip(rows, files[:3]):
            assert np.abs(row - list(expected[file.name].probabilities.values())).max() < 1e-5
        flat = infer_body(np.ravel(preprocessed(files[3], parameters)).tolist(), shape=[1, 3, SIZE, SIZE])
        status, answer = call(f"{server.url}/v2/models/model/infer", flat, "application/json")
        assert status == 200
        assert (
            np.abs(np.array(answer["outputs"][0]["data"]) - list(expected[files[3].name].probabilities.values())).max()
            < 1e-5
        )

        # Grad-CAM, as predict --cam draws it, inline
        status, answer = upload(server.url, files[0].read_bytes(), cam="1")
        assert status == 200
        assert_same(answer, expected[files[0].name])
        overlay = Image.open(io.BytesIO(base64.b64decode(answer["cam"].removeprefix("data:image/png;base64,"))))
        assert overlay.format == "PNG" and overlay.width > 100

        # the page: self-contained, its script allowed by hash
        with HTTP.open(f"{server.url}/", timeout=30) as response:
            page, policy = response.read().decode(), response.headers["Content-Security-Policy"]
        assert "script-src 'sha256-" in policy and "connect-src 'self'" in policy
        assert not re.search(r"(src|href)=\"(https?:)?//", page) and "@import" not in page
        assert call(f"{server.url}/model-card")[0] == 404  # none beside this model


def truncated(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]


def bomb() -> bytes:
    """A PNG of a few bytes that says it is 40000 x 40000 pixels: more than twice PIL's limit."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = buffer.getvalue()
    header = b"IHDR" + struct.pack(">II", 40000, 40000) + data[24:29]  # bit depth, colour type, ...
    return data[:12] + header + struct.pack(">I", zlib.crc32(header)) + data[33:]


def test_each_bad_request_is_a_4xx_with_one_line_and_the_server_keeps_answering(served, files, expected):
    jpeg = files[0].read_bytes()
    good = [[[0.0] * SIZE] * SIZE] * 3
    infer = "/v2/models/model/infer"
    cases = [
        # (what, route, body, content type, status, part of the reason)
        ("not an image", "/predict", *form({}, b"hello, not an image"), 422, "cannot identify image file the upload"),
        ("a truncated JPEG", "/predict", *form({}, truncated(jpeg)), 422, "truncated"),
        ("a decompression bomb", "/predict", *form({}, bomb(), "bomb.png", "image/png"), 422, "decompression bomb"),
        ("an empty file", "/predict", *form({}, b""), 422, "cannot identify"),
        ("a text part", "/predict", *form({}, jpeg, kind="text/plain"), 415, "upload an image"),
        ("JSON to /predict", "/predict", b"{}", "application/json", 415, "multipart/form-data"),
        ("no image", "/predict", *form({"age": "50"}, None), 400, "no file"),
        ("a form field of no one's", "/predict", *form({"colour": "red"}, jpeg), 400, "unknown form fields"),
        ("an age of 130", "/predict", *form({"age": "130"}, jpeg), 422, "age '130' is not an age"),
        ("an age that is no number", "/predict", *form({"age": "old"}, jpeg), 422, "age 'old'"),
        ("a sex of no one's", "/predict", *form({"sex": "x"}, jpeg), 422, "sex 'x' is none of"),
        ("a site of no one's", "/predict", *form({"site": "moon"}, jpeg), 422, "site 'moon'"),
        ("top 0", "/predict", *form({"top": "0"}, jpeg), 422, "top is '0'"),
        ("a form without its boundary", "/predict", b"--x\r\n", "multipart/form-data", 400, "multipart"),
        ("a body over the limit", "/predict", *form({}, jpeg + bytes(300_000)), 413, "at most 393216 bytes"),
        ("not JSON", infer, b"{not json", "application/json", 400, "not JSON"),
        ("JSON of another shape", infer, b'{"inputs": 3}', "application/json", 400, "inputs: Input should be"),
        ("a JSON list", infer, b"[1, 2]", "application/json", 400, "not an inference request"),
        ("INT32", infer, infer_body([good], datatype="INT32"), "application/json", 400, "datatype"),
        ("16 px", infer, infer_body([[[[0.0] * 16] * 16] * 3]), "application/json", 400, "shape [1, 3, 16, 16]"),
        ("too few values", infer, infer_body([good], shape=[2, 3, SIZE, SIZE]), "application/json", 400, "values"),
        ("text values", infer, infer_body(["a"] * 3 * SIZE * SIZE, shape=[1, 3, SIZE, SIZE]), "application/json",
         400, "not an array of numbers"),
        ("NaN", infer, infer_body([good]).replace(b"0.0", b"NaN", 1), "application/json", 400, "NaN"),
        ("another input", infer, infer_body([good], name="pixels"), "application/json", 400, "the model takes"),
        ("a form to infer", infer, *form({}, jpeg), 415, "JSON"),
        ("another model", "/v2/models/other/infer", infer_body([good]), "application/json", 404, "no model 'other'"),
        ("another version", "/v2/models/model/versions/0/infer", infer_body([good]), "application/json", 404,
         "no version '0'"),
        ("no such route", "/v1/models", b"{}", "application/json", 404, "Not Found"),
    ]  # fmt: skip
    with running(served, max_body=384 * 1024) as server:
        for what, route, body, content_type, status, reason in cases:
            answer = call(f"{server.url}{route}", body, content_type)
            assert answer[0] == status and reason in answer[1]["error"], (what, answer)
            assert "\n" not in answer[1]["error"], what
            assert call(f"{server.url}/v2/health/live")[0] == 200, f"not live after {what}"
        status, answer = upload(server.url, jpeg)
        assert status == 200
        assert_same(answer, expected[files[0].name])
        assert server.metrics.errors() == len(cases)
        assert not any(status >= 500 for _, status in server.metrics.requests), server.metrics.requests


def test_32_concurrent_clients_share_forward_passes_and_metrics_count_them(served, files, expected):
    with running(served, batching=Batching(max_batch=16, max_wait=0.05)) as server:
        images = [files[i % len(files)] for i in range(32)]
        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(lambda file: upload(server.url, file.read_bytes()), images))
        for file, (status, answer) in zip(images, answers):
            assert status == 200, answer
            assert_same(answer, expected[file.name])
        _, text = call(f"{server.url}/metrics")
    assert exposition_value(text, 'skinlesion_requests_total{route="/predict",status="200"}') == 32
    assert exposition_value(text, 'skinlesion_request_duration_seconds_count{route="/predict"}') == 32
    assert exposition_value(text, 'skinlesion_request_errors_total{route="/predict"}') == 0
    assert exposition_value(text, 'skinlesion_batch_size_sum{route="/predict"}') == 32
    forward_passes = exposition_value(text, 'skinlesion_batch_size_count{route="/predict"}')
    assert forward_passes < 32  # requests were gathered: at least one pass held several images
    assert exposition_value(text, 'skinlesion_batch_size_bucket{route="/predict",le="16"}') == forward_passes


def tiny_export(path: Path, info: ModelInfo) -> None:
    """An ONNX file in the form `skinlesion export` writes (inputs, output and metadata, which
    onnx_graph.description writes), around a graph that takes milliseconds to make: global
    average pooling, a linear layer and a softmax. The exporter itself is test_export's."""
    weights = np.random.default_rng(0).normal(size=(3, len(info.classes))).astype(np.float32) * 4
    nodes = [
        onnx.helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
        onnx.helper.make_node("Flatten", ["pooled"], ["flat"]),
        onnx.helper.make_node("MatMul", ["flat", "weights"], ["logits"]),
        onnx.helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    size, classes = info.image_size, len(info.classes)
    graph = onnx.helper.make_graph(
        nodes,
        "tiny",
        [onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["N", 3, size, size])],
        [onnx.helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, ["N", classes])],
        initializer=[onnx.numpy_helper.from_array(weights, "weights")],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.helper.set_model_props(model, description(info))
    onnx.save(model, path)


def test_stopping_a_batcher_answers_the_requests_it_holds():
    """Past uvicorn's graceful timeout the app stops its batchers: a request being gathered into
    a batch, one in the batch that runs and one still queued each hear that the server is
    shutting down, none waits for ever."""
    release = threading.Event()

    def run_batch(items: list[int]) -> list[int]:
        release.wait(10)
        return items

    async def stopped(requests: list[list[int]], max_batch: int) -> list[BaseException | list[int]]:
        settings = Batching(max_batch=max_batch, max_wait=30)
        batcher = MicroBatcher(run_batch, settings=settings, executor=executor, metrics=Metrics(), route="test")
        batcher.start()
        submitted = []
        for items in requests:
            submitted.append(asyncio.ensure_future(batcher.submit(items)))
            await asyncio.sleep(0.05)  # the worker takes it before the next comes
        await asyncio.wait_for(batcher.stop(), 5)
        return await asyncio.wait_for(asyncio.gather(*submitted, return_exceptions=True), 5)

    with ThreadPoolExecutor(1) as executor:
        gathering = asyncio.run(stopped([[1]], max_batch=2))  # waits 30 s for a second image
        running = asyncio.run(stopped([[1, 2], [3]], max_batch=2))  # a full batch runs; [3] is queued
        release.set()
    for answer in [*gathering, *running]:
        assert isinstance(answer, RuntimeError) and "shutting down" in str(answer), answer


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_command_serves_an_onnx_export_and_sigterm_lets_requests_in_flight_finish(tmp_path, files):
    exported = tmp_path / "model.onnx"
    tiny_export(exported, model_info(image_size=SIZE, unknown_threshold=0.5))
    expected = library_predictions(exported, files[:2])
    url, port = None, free_port()
    # each request waits up to 2 s for others: long enough to stop the server while two are waiting
    command = [sys.executable, "-m", "skinlesion", "serve", "--model", str(exported), "--port", str(port),
               "--max-wait-ms", "2000", "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
        while True:
            assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
            with contextlib.suppress(OSError):
                if call(f"{url}/v2/health/ready")[0] == 200:
                    break
            time.sleep(0.1)
        status, metadata = call(f"{url}/v2/models/model")
        assert status == 200 and metadata["platform"] == "onnxruntime_onnx"
        status, answer = upload(url, files[0].read_bytes(), cam="1")
        assert status == 422 and "Grad-CAM needs the model file" in answer["error"]

        body = infer_body([preprocessed(files[1], metadata["parameters"])])
        with ThreadPoolExecutor(2) as pool:
            uploaded = pool.submit(upload, url, files[0].read_bytes())
            inferred = pool.submit(call, f"{url}/v2/models/model/infer", body, "application/json")
            time.sleep(0.7)
            server.send_signal(signal.SIGTERM)
            (status, answer), (infer_status, infer_answer) = uploaded.result(), inferred.result()
        assert server.wait(timeout=30) == -signal.SIGTERM  # uvicorn ends by the signal, once the requests are done
    finally:
        if server.poll() is None:
            server.kill()
    log = server.stdout.read().decode()
    assert status == 200, (answer, log)
    assert_same(answer, expected[files[0].name])
    assert infer_status == 200, (infer_answer, log)
    wanted = list(expected[files[1].name].probabilities.values())
    assert np.abs(np.array(infer_answer["outputs"][0]["data"]) - wanted).max() < 1e-5
    assert "Shutting down" in log and "Finished server process" in log


def test_the_command_says_what_is_wrong_before_serving(tmp_path, capsys):
    for args, message in [
        (["--model", str(tmp_path / "missing.pt")], "missing.pt: model file not found"),
        (["--max-wait-ms", "-1"], "--max-wait-ms -1 must be 0 or more"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            skinlesion(["serve", *args])
        assert exit_.value.code == 2 and message in capsys.readouterr().err


# --- the page, in headless Chromium driven through its DevTools protocol ---

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class DevTools:
    """A DevTools protocol session over a websocket: call(method, **params) -> its result."""

    def __init__(self, socket_):
        self.socket, self.sent = socket_, 0

    async def call(self, method: str, **params) -> dict:
        self.sent += 1
        await self.socket.send_json({"id": self.sent, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self.socket.receive_json(), 30)
            if message.get("id") == self.sent:
                assert "error" not in message, (method, message["error"])
                return message["result"]

    async def evaluate(self, expression: str) -> Any:
        return (await self.call("Runtime.evaluate", expression=expression, returnByValue=True))["result"].get("value")


async def upload_through_the_page(port: int, url: str, image: Path) -> dict:
    """In the browser's tab showing `url` (DevTools on `port`), drop `image` into the page's
    file input as a user would, wait for the page's script to show the answer, and read it
    from the DOM."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                tabs = [target for target in await response.json() if target["url"] == url]
            if tabs:
                break
            await asyncio.sleep(0.05)
        async with session.ws_connect(tabs[0]["webSocketDebuggerUrl"], max_msg_size=0) as socket_:
            devtools = DevTools(socket_)
            for _ in range(300):
                if await devtools.evaluate("document.readyState == 'complete' && !!document.getElementById('image')"):
                    break
                await asyncio.sleep(0.05)
            root = (await devtools.call("DOM.getDocument"))["root"]["nodeId"]
            node = (await devtools.call("DOM.querySelector", nodeId=root, selector="#image"))["nodeId"]
            await devtools.call("DOM.setFileInputFiles", files=[str(image)], nodeId=node)
            for _ in range(600):
                state = await devtools.evaluate("document.getElementById('result').dataset.state")
                if state in ("done", "error"):
                    break
                await asyncio.sleep(0.05)
            shown = await devtools.evaluate(
                "({state: document.getElementById('result').dataset.state,"
                " predicted: document.getElementById('result').dataset.predicted,"
                " rows: [...document.querySelectorAll('#classes tr')].map(r => r.innerText),"
                " unknown: document.getElementById('unknown').textContent,"
                " status: document.getElementById('status').textContent,"
                " cam: document.getElementById('cam').src.slice(0, 30),"
                " camShown: !document.getElementById('cam').hidden})"
            )
    return shown


async def close_browser(port: int, session: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as client, client.ws_connect(f"ws://127.0.0.1:{port}{session}") as socket_:
        await DevTools(socket_).call("Browser.close")


@contextlib.contextmanager
def chromium_on(url: str, profile: Path, net_log: Path) -> Iterator[tuple[int, str, subprocess.Popen]]:
    """Headless Chromium showing `url`, with test_model_card's flags (every host name but
    127.0.0.1 unresolvable, the network and the console logged) but no virtual time budget,
    which would close the tab: its DevTools port and browser session, and the process
    (stopped on exit, if close_browser has not)."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
             f"--user-data-dir={profile}", f"--log-net-log={net_log}", "--enable-logging=stderr", "--v=0",
             "--remote-debugging-port=0"]  # fmt: skip
    browser = subprocess.Popen([CHROMIUM, *flags, url], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline, active = time.monotonic() + 60, profile / "DevToolsActivePort"
        while not (active.is_file() and active.read_text().strip()):
            assert browser.poll() is None and time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.1)
        port, session = active.read_text().split()[:2]
        yield int(port), session, browser
    finally:
        browser.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            browser.wait(30)
        if browser.poll() is None:
            browser.kill()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's chromium)")
def test_the_page_uploads_an_image_through_its_own_script_in_headless_chromium(served, files, expected, tmp_path):
    from test_model_card import page_requests

    net_log = tmp_path / "net.json"
    with (
        running(served) as server,
        chromium_on(f"{server.url}/", tmp_path / "profile", net_log) as (
            port,
            session,
            browser,
        ),
    ):
        shown = asyncio.run(upload_through_the_page(port, f"{server.url}/", files[2]))
        asyncio.run(close_browser(port, session))  # a closed browser finishes its network log
        console = browser.communicate(timeout=30)[1]
    prediction = expected[files[2].name]
    assert shown["state"] == "done", shown
    assert shown["predicted"] == prediction.predicted
    assert [row.split("\t")[:2] for row in shown["rows"]] == [[name, f"{p:.3f}"] for name, p in prediction.top(3)]
    assert shown["unknown"].startswith("Unknown") == prediction.unknown
    assert shown["camShown"] and shown["cam"].startswith("data:image/png;base64,")
    assert ":CONSOLE" not in console, console[-2000:]  # no script error, no policy violation
    requests = page_requests(net_log)
    assert f"{server.url}/predict" in requests and all(url.startswith(server.url) for url in requests), requests
