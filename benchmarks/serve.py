"""`skinlesion serve` on loopback against `skinlesion predict`'s library, one run: images per
second and p50/p99 latency of POST /predict at 1, 8 and 32 concurrent clients, with
micro-batching on (each --max-batch, with --max-wait-ms) and off (--max-batch 1), the server
process's memory before and after the requests, and the requests that failed; each with its
ratio.

A DenseNet121 with random weights at --size px (what is timed is the serving, not what the
network learnt) is saved as a model file, or exported with `skinlesion export` (--format onnx).
The baseline is the library on the same files and model in this process: classify_batches in
batches of 1, 8 and each --max-batch, each the median of three passes after a warm-up pass; the
ratios are to the fastest of them (on a CPU a larger batch is not always faster). Each server
is `python -m skinlesion serve` on 127.0.0.1 in its own process, warmed up by four requests;
each client sends its requests one after another (a closed loop), --requests in all per
setting, and no setting runs past --seconds.

    python -m benchmarks.serve --out benchmarks/results/cpu/serve.json
    python -m benchmarks.serve --size 64 --clients 32 --requests 10000 --max-batch 32 --seconds 600 \
        --out benchmarks/results/cpu/serve_soak.json
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import torch

from benchmarks import publish
from benchmarks.predict_stream import make_images
from benchmarks.timing import measure, timed
from skinlesion.classes import CLASSES
from skinlesion.model.architectures import build_model
from skinlesion.model.info import ModelInfo
from skinlesion.model.model_file import save_checkpoint
from skinlesion.predict.run import classify_batches, load_classifier
from skinlesion.transforms.normalize import IMAGENET_MEAN, IMAGENET_STD

REPO = Path(__file__).resolve().parents[1]
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, never a proxy
BOUNDARY = "benchmark-boundary"


def library_rate(model: Path, files: list[Path], batch_size: int) -> float:
    """Images per second of skinlesion predict's library on `files`: the median of three passes
    over them, after a warm-up pass."""
    classify = load_classifier(model, device="cpu")
    timing = measure(lambda: list(classify_batches(classify, files, batch_size=batch_size)), warmup=1, repeats=3)
    return len(files) / timing.median_s


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def server(model: Path, max_batch: int, max_wait_ms: float) -> Iterator[tuple[str, psutil.Process]]:
    """`skinlesion serve` of `model` on a free loopback port, once it is ready: its URL and process."""
    port = free_port()
    command = [sys.executable, "-m", "skinlesion", "serve", "--model", str(model), "--port", str(port),
               "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
    try:
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {' '.join(command)}")
            with contextlib.suppress(OSError):
                if HTTP.open(f"{url}/v2/health/ready", timeout=5).status == 200:
                    break
            time.sleep(0.2)
        yield url, psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(60)


def upload_body(file: Path) -> bytes:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="{file.name}"\r\n'
    return f"{head}Content-Type: image/jpeg\r\n\r\n".encode() + file.read_bytes() + f"\r\n--{BOUNDARY}--\r\n".encode()


def post(url: str, body: bytes) -> tuple[bool, float]:
    """Whether POST /predict of `body` answered 200, and its latency in seconds."""
    request = urllib.request.Request(
        f"{url}/predict", data=body, headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    )

    def answered() -> bool:
        try:
            with HTTP.open(request, timeout=120) as response:
                response.read()
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    return timed(answered)


def load(url: str, bodies: list[bytes], clients: int, requests: int, seconds: float) -> dict:
    """`requests` uploads by `clients` closed-loop clients, stopping at `seconds`."""
    deadline = time.monotonic() + seconds

    def client(index: int) -> list[tuple[bool, float]]:
        results = []
        for n in range(index, requests, clients):
            if time.monotonic() > deadline:
                break
            results.append(post(url, bodies[n % len(bodies)]))
        return results

    def all_clients() -> list[tuple[bool, float]]:
        with ThreadPoolExecutor(clients) as pool:
            return [result for part in pool.map(client, range(clients)) for result in part]

    results, wall = timed(all_clients)
    latencies = sorted(seconds for ok, seconds in results if ok)
    return {
        "requests": len(results),
        "errors": sum(not ok for ok, _ in results),
        "stopped_at_time_limit": len(results) < requests,
        "images_per_s": round(len(latencies) / wall, 2),
        "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="the model's input size, px")
    parser.add_argument("--format", choices=["pt", "onnx"], default="pt", help="serve the model file or its export")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32], help="concurrent clients")
    parser.add_argument("--requests", type=int, default=128, help="uploads per setting")
    parser.add_argument("--files", type=int, default=64, help="distinct JPEGs (96 x 96) uploaded in turn")
    parser.add_argument(
        "--max-batch", type=int, nargs="+", default=[8, 32], help="serve --max-batch with batching on, one run each"
    )
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="serve --max-wait-ms with batching on")
    parser.add_argument("--seconds", type=float, default=300, help="time limit per setting")
    parser.add_argument("--out", type=Path, help="also write the report here (JSON)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch.manual_seed(0)
        info = ModelInfo(
            arch="densenet121", classes=CLASSES, image_size=args.size, mean=IMAGENET_MEAN, std=IMAGENET_STD
        )
        model = work / "model.pt"
        save_checkpoint(model, build_model("densenet121", len(CLASSES), "none"), info)
        if args.format == "onnx":
            from skinlesion.export.onnx_graph import export_onnx

            export_onnx(model, model.with_suffix(".onnx"))
            model = model.with_suffix(".onnx")
        files = make_images(work / "images", args.files)
        bodies = [upload_body(file) for file in files]
        libraries = {size: library_rate(model, files, size) for size in sorted({1, 8, *args.max_batch})}
        library = max(libraries.values())
        report = {
            "device": platform.processor() or "cpu",
            "cpus": os.cpu_count(),
            "model": f"densenet121 ({args.format}), random weights, {args.size} px",
            "image_files": f"{args.files} JPEGs of 96 x 96 px",
            "requests_per_setting": args.requests,
            "library_images_per_s_by_batch": {str(size): round(rate, 2) for size, rate in libraries.items()},
            "library_images_per_s": round(library, 2),
            "settings": {},
        }
        batching = [(f"batching_{size}", size, args.max_wait_ms) for size in args.max_batch]
        for name, max_batch, max_wait in [*batching, ("no_batching", 1, 0.0)]:
            with server(model, max_batch, max_wait) as (url, process):
                for body in bodies[:4]:  # warm-up: the first forward passes set up the network's kernels
                    post(url, body)
                rss_before = process.memory_info().rss
                runs = {}
                for clients in args.clients:
                    run = load(url, bodies, clients, args.requests, args.seconds)
                    run["ratio_to_library"] = round(run["images_per_s"] / library, 2)
                    runs[f"{clients}_clients"] = run
                rss_after = process.memory_info().rss
            report["settings"][name] = {
                "max_batch": max_batch,
                "max_wait_ms": max_wait,
                "rss_mb_before": round(rss_before / 2**20, 1),
                "rss_mb_after": round(rss_after / 2**20, 1),
                **runs,
            }
        off = report["settings"]["no_batching"]
        report["batching_speedup"] = {
            name: {
                key: round(on[key]["images_per_s"] / max(off[key]["images_per_s"], 1e-9), 2)
                for key in on
                if key.endswith("_clients")
            }
            for name, on in report["settings"].items()
            if name != "no_batching"
        }
    publish(report, args.out)


if __name__ == "__main__":
    main()
