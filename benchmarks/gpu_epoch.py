"""One short training epoch through the train stage's own fit(), timed, on generated data.

Runs where only torch and torchvision are installed (no DVC): MemoryLive records what
DVCLive would log. Used by benchmarks/gpu_check.sh on GPU machines.

    python -m benchmarks.gpu_epoch --images 1024 --size 224 --out epoch.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from benchmarks import publish
from benchmarks.timing import timed
from benchmarks.train_throughput import make_data
from skinlesion.config import load_params
from skinlesion.cores import available_cores
from skinlesion.data.arrays import write_manifest
from skinlesion.data.folds import FoldData
from skinlesion.training.live import MemoryLive
from skinlesion.training.loop import fit
from skinlesion.training.params import TrainRun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--val-images", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=min(8, available_cores()))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    params = load_params(TrainRun)
    params = params.model_copy(
        update={
            "prepare": params.prepare.model_copy(update={"image_size": args.size}),
            "training": params.training.model_copy(update={"epochs": args.epochs, "num_workers": args.workers}),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _, _, _, manifest = make_data(work, args.images, args.size, args.workers)
        write_manifest(manifest, work / "train.csv")
        data = FoldData(work, work / "train.csv", manifest.head(args.val_images), "the first training images")
        live = MemoryLive()
        best, seconds = timed(lambda: fit(params, data, work / "model.pt", live))
    report = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "image_size": args.size,
        "train_images": args.images,
        "val_images": args.val_images,
        "epochs": args.epochs,
        "wall_s": round(seconds, 1),
        "train_images_per_s_incl_val_and_startup": round(args.images * args.epochs / seconds, 1),
        "best": best,
        "history": [{name: round(value, 4) for name, value in step.items()} for step in live.history],
    }
    publish(report, args.out)


if __name__ == "__main__":
    main()
