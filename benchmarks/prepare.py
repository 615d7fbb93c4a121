"""Decoding throughput of prepare-split against a naive loop, and its peak memory at full scale.

1. Throughput, in one run on the same generated 1024x1024 JPEGs: the naive loop of the
   original code (one process: PIL open, convert, resize) against the project's decoding
   (reduced-scale JPEG decoding with Image.draft, one process per core).
2. Peak memory (with --labels): the real prepare-split stage on the real ISIC 2019 label
   files, 25,331 images, with the generated JPEGs hard-linked under every name, and
   the resident memory of the stage and all its workers summed and sampled every 0.2 s.

    python -m benchmarks.prepare --labels ../shared/data/isic2019-labels --out benchmarks/results/cpu/prepare.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import yaml
from PIL import Image

from benchmarks import publish
from benchmarks.timing import timed
from skinlesion.cores import available_cores
from skinlesion.data.images import load_image
from skinlesion.data.isic import GROUND_TRUTH_CSV, IMAGE_DIR, METADATA_CSV, ImageSource, read_labels
from skinlesion.data.prepare import decode_all
from skinlesion.data.synthetic import lesion_images

REPO = Path(__file__).resolve().parents[1]


def make_jpegs(folder: Path, count: int, side: int = 1024, seed: int = 0) -> list[Path]:
    """`count` distinct side x side dermoscopy-like JPEGs."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (_, image) in enumerate(lesion_images(count, side, seed)):
        paths.append(folder / f"pool_{i:03d}.jpg")
        image.save(paths[-1], quality=90)
    return paths


def link_images(pool: list[Path], images: list[str], root: Path) -> None:
    """Hard-link the pool's JPEGs under every image name, in the ISIC layout."""
    (root / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        os.link(pool[i % len(pool)], root / IMAGE_DIR / f"{image}.jpg")


def naive_rate(root: Path, images: list[str], size: int) -> float:
    """Images/s of the original code's loop: one process, full decode, convert, resize."""

    def decode_each() -> None:
        for image in images:
            with Image.open(root / IMAGE_DIR / f"{image}.jpg") as picture:
                np.asarray(picture.convert("RGB").resize((size, size)))

    _, seconds = timed(decode_each)
    return len(images) / seconds


def project_rate(root: Path, images: list[str], size: int, workers: int) -> float:

    def decode_in_workers() -> None:
        for _ in decode_all(ImageSource(root), images, functools.partial(load_image, size=size), workers):
            pass

    _, seconds = timed(decode_in_workers)
    return len(images) / seconds


def run_stage_with_peak_memory(folder: Path, data_root: Path, size: int) -> dict:
    """Run the prepare-split stage in `folder`; return wall time and peak summed RSS."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["prepare"].update(image_size=size, workers="auto")
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "stages.prepare_split",
        "--data-root",
        str(data_root),
        "--out",
        "prepared",
        "--metrics",
        "data.json",
    ]

    def run_sampling_memory() -> tuple[subprocess.Popen, int]:
        process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        parent, peak = psutil.Process(process.pid), 0
        while process.poll() is None:
            try:
                tree = [parent, *parent.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.2)
        return process, peak

    (process, peak), seconds = timed(run_sampling_memory)
    if process.returncode:
        raise RuntimeError(process.stderr.read())
    arrays = sum(f.stat().st_size for f in (folder / "prepared").glob("*.npy"))
    return {
        "wall_s": round(seconds, 1),
        "peak_rss_mb": round(peak / 2**20),
        "arrays_on_disk_mb": round(arrays / 2**20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--labels", type=Path, help="folder with the real ISIC 2019 CSVs: runs the full-scale memory run"
    )
    parser.add_argument("--throughput-images", type=int, default=240)
    parser.add_argument("--pool", type=int, default=48, help="distinct JPEGs generated")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    workers = available_cores()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pool = make_jpegs(work / "pool", args.pool)
        names = [f"ISIC_{i:07d}" for i in range(args.throughput_images)]
        link_images(pool, names, work / "small")
        naive = naive_rate(work / "small", names, args.size)
        project = project_rate(work / "small", names, args.size, workers)
        report = {
            "cpus": workers,
            "image": "1024x1024 JPEG",
            "size": args.size,
            "naive_images_per_s": round(naive, 1),
            "project_images_per_s": round(project, 1),
            "speedup": round(project / naive, 2),
        }
        print(json.dumps(report, indent=2), flush=True)
        if args.labels:
            full = work / "full"
            full.mkdir()
            for name in (GROUND_TRUTH_CSV, METADATA_CSV):
                (full / name).write_bytes((args.labels / name).read_bytes())
            images = list(read_labels(full)["image"])
            link_images(pool, images, full)
            report["full_scale"] = {"images": len(images), **run_stage_with_peak_memory(work, full, args.size)}
    publish(report, args.out)


if __name__ == "__main__":
    main()
