"""Prediction at the official test set's scale: memory against the number of images, one run.

`skinlesion predict FOLDER --out results.csv` on generated JPEGs, once on the first
--baseline-images of them and once on all --images (8,238 is the official ISIC 2019 test
set), each in its own process, whose resident memory is sampled every 0.1 s. Results stream
to the file batch by batch, so the peak should not grow with the number of images: the
report gives both peaks and their ratio, the images per second, and checks that the results
file has one row per image. The model is a DenseNet121 with random weights at --size px (what
is timed is the pipeline around it, not what it learnt).

    python -m benchmarks.predict_stream --images 8000 --out benchmarks/results/cpu/predict_stream.json
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil
import torch

from benchmarks import publish
from benchmarks.timing import timed
from skinlesion.classes import CLASSES
from skinlesion.data.synthetic import lesion_images
from skinlesion.model.architectures import build_model
from skinlesion.model.info import ModelInfo
from skinlesion.model.model_file import save_checkpoint
from skinlesion.transforms.normalize import IMAGENET_MEAN, IMAGENET_STD

REPO = Path(__file__).resolve().parents[1]


def make_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` small dermoscopy-like JPEGs (96 x 96), named as ISIC images."""
    folder.mkdir(parents=True)
    paths = []
    for i, (_, image) in enumerate(lesion_images(count, 96, seed)):
        paths.append(folder / f"ISIC_{i:07d}.jpg")
        image.save(paths[-1], quality=85)
    return paths


def run_predict(images: Path, model: Path, out: Path, batch_size: int) -> dict:
    """One `skinlesion predict` process: its wall time and peak resident memory (sampled)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "skinlesion", "predict", str(images), "--model", str(model)]
    command += ["--out", str(out), "--batch-size", str(batch_size), "--device", "cpu"]
    log = out.with_suffix(".log")

    def run_sampling_memory() -> tuple[subprocess.Popen, int]:
        peak = 0
        with (
            open(log, "w") as errors,
            subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=errors) as process,
        ):
            watched = psutil.Process(process.pid)
            while process.poll() is None:
                try:
                    peak = max(peak, watched.memory_info().rss)
                except psutil.NoSuchProcess:
                    break
                time.sleep(0.1)
        return process, peak

    (process, peak), seconds = timed(run_sampling_memory)
    if process.returncode != 0:
        raise SystemExit(f"skinlesion predict failed:\n{log.read_text()}")
    return {"images": len(pd.read_csv(out)), "seconds": round(seconds, 1), "peak_rss_mb": round(peak / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8000)
    parser.add_argument("--baseline-images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64, help="the model's input size, px")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, help="also write the report here (JSON)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch.manual_seed(0)
        model = work / "model.pt"
        info = ModelInfo(
            arch="densenet121", classes=CLASSES, image_size=args.size, mean=IMAGENET_MEAN, std=IMAGENET_STD
        )
        save_checkpoint(model, build_model("densenet121", len(CLASSES), "none"), info)
        paths = make_images(work / "all", args.images)
        few = work / "few"
        few.mkdir()
        for path in paths[: args.baseline_images]:
            os.link(path, few / path.name)
        baseline = run_predict(few, model, work / "few.csv", args.batch_size)
        full = run_predict(work / "all", model, work / "all.csv", args.batch_size)
    if (baseline["images"], full["images"]) != (args.baseline_images, args.images):
        raise SystemExit(f"a results file lacks rows: {baseline['images']} and {full['images']} rows")
    for run in (baseline, full):
        run["images_per_s"] = round(run["images"] / run["seconds"], 1)
    report = {
        "device": platform.processor() or "cpu",
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "image_size": args.size,
        "batch_size": args.batch_size,
        "baseline": baseline,
        "full": full,
        "images_ratio": round(full["images"] / baseline["images"], 2),
        "peak_rss_ratio": round(full["peak_rss_mb"] / baseline["peak_rss_mb"], 3),
    }
    publish(report, args.out)


if __name__ == "__main__":
    main()
