"""ONNX Runtime against torch on the CPU for prediction, one run: import time, per-image time,
and `skinlesion predict` end to end, each with its ratio (torch / ONNX Runtime).

A DenseNet121 with random weights (what is timed is the network, not what it learnt) is saved
as a model file and exported with `skinlesion export`; both then classify the same decoded
images in batches of --batch-size, through predict's own classifiers (TorchClassifier and
OnnxClassifier: the same normalisation, no TTA), after one batch of warm-up. Per image: wall
time and the process's CPU time (all threads). Imports: a fresh process importing each
classifier's module, median of three. End to end: `skinlesion predict FOLDER --out` with the
model file and with the export, each in its own process.

    python -m benchmarks.onnx_runtime --out benchmarks/results/cpu/onnx_runtime.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from benchmarks import publish
from benchmarks.predict_stream import make_images
from benchmarks.timing import measure, timed
from skinlesion.classes import CLASSES
from skinlesion.export.onnx_graph import export_onnx
from skinlesion.model.architectures import build_model
from skinlesion.model.checkpoint import load_checkpoint
from skinlesion.model.info import ModelInfo
from skinlesion.model.model_file import save_checkpoint
from skinlesion.predict.onnx_classifier import OnnxClassifier
from skinlesion.predict.torch_classifier import TorchClassifier
from skinlesion.transforms.normalize import IMAGENET_MEAN, IMAGENET_STD

REPO = Path(__file__).resolve().parents[1]


def import_seconds(module: str) -> float:
    """Median over three fresh processes of the time to import `module`."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    runs = [float(subprocess.check_output([sys.executable, "-c", code], env=env, text=True)) for _ in range(3)]
    return round(statistics.median(runs), 3)


def per_image(classify, images: list[np.ndarray], batch_size: int) -> dict:
    """Wall and CPU milliseconds per image of `classify` over `images`, after a warm-up batch."""
    classify(images[:batch_size], [""] * batch_size, None)

    def in_batches() -> None:
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            classify(chunk, [""] * len(chunk), None)

    timing = measure(in_batches)
    wall, cpu = timing.best_s, min(timing.cpu_s)
    return {"wall_ms": round(1000 * wall / len(images), 2), "cpu_ms": round(1000 * cpu / len(images), 2)}


def end_to_end(folder: Path, model: Path, out: Path) -> float:
    """Seconds of one `skinlesion predict FOLDER --model MODEL --out OUT` process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "skinlesion", "predict", str(folder), "--model", str(model), "--out", str(out)]
    _, seconds = timed(
        lambda: subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    )
    return round(seconds, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 64], help="the model's input sizes, px")
    parser.add_argument("--images", type=int, default=128, help="images classified per size")
    parser.add_argument("--files", type=int, default=200, help="image files predicted end to end (at the last size)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, help="also write the report here (JSON)")
    args = parser.parse_args()
    report = {
        "device": platform.processor() or "cpu",
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "torch_threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "import_s": {
            "torch": import_seconds("skinlesion.predict.torch_classifier"),
            "onnxruntime": import_seconds("skinlesion.predict.onnx_classifier; import onnxruntime"),
        },
    }
    report["import_s"]["ratio"] = round(report["import_s"]["torch"] / report["import_s"]["onnxruntime"], 2)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for size in args.sizes:
            torch.manual_seed(0)
            info = ModelInfo(arch="densenet121", classes=CLASSES, image_size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
            model_file, exported = work / f"{size}.pt", work / f"{size}.onnx"
            save_checkpoint(model_file, build_model("densenet121", len(CLASSES), "none"), info)
            export_onnx(model_file, exported)
            images = list(rng.integers(0, 256, (args.images, size, size, 3), dtype=np.uint8))
            model, info = load_checkpoint(model_file)
            by_torch = per_image(TorchClassifier(model, info, torch.device("cpu")), images, args.batch_size)
            by_onnx = per_image(OnnxClassifier(exported, device="cpu"), images, args.batch_size)
            report[f"{size}px"] = {
                "images": args.images,
                "torch": by_torch,
                "onnxruntime": by_onnx,
                "wall_ratio": round(by_torch["wall_ms"] / by_onnx["wall_ms"], 2),
                "cpu_ratio": round(by_torch["cpu_ms"] / by_onnx["cpu_ms"], 2),
            }
        folder = work / "images"
        make_images(folder, args.files)
        by_torch, by_onnx = end_to_end(folder, model_file, work / "t.csv"), end_to_end(folder, exported, work / "o.csv")
        report["predict_end_to_end"] = {
            "files": args.files,
            "image_size": args.sizes[-1],
            "torch_s": by_torch,
            "onnxruntime_s": by_onnx,
            "ratio": round(by_torch / by_onnx, 2),
        }
    publish(report, args.out)


if __name__ == "__main__":
    main()
