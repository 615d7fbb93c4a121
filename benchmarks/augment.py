"""Train-time augmentation: per image in one process (the loader's path) against one batch at once.

Baseline: torchvision's per-image transforms as each DataLoader worker runs them (crop,
flips, rotation, colour jitter, normalisation), one image at a time in one process.
Project option: BatchAugment (training.augment_on: device) on the same uint8 images,
`--batch` at a time, on the device. Prints a JSON report with both rates and their ratio.

    python -m benchmarks.augment --size 224 --images 256 --batch 32
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import torch

from benchmarks import publish
from benchmarks.timing import timed
from benchmarks.train_throughput import published_augmentation
from skinlesion.config import load_params
from skinlesion.model.device import select_device
from skinlesion.training.params import TrainRun
from skinlesion.transforms.augment import train_transform
from skinlesion.transforms.batched import BatchAugment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (a loader worker has 1)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device("auto")
    images = torch.from_numpy(
        np.random.default_rng(0).integers(0, 256, (args.images, 3, args.size, args.size), dtype=np.uint8)
    )

    augmentation = published_augmentation(load_params(TrainRun))
    per_image = train_transform(params=augmentation, size=args.size)
    torch.manual_seed(0)
    per_image(images[0])

    def one_at_a_time() -> None:
        for image in images:
            per_image(image)

    _, seconds = timed(one_at_a_time)
    baseline = args.images / seconds

    batched, generator = BatchAugment(augmentation, args.size).to(device), torch.Generator().manual_seed(0)
    on_device = images.to(device)
    batched(on_device[: args.batch], generator)

    def in_batches() -> None:
        for first in range(0, args.images, args.batch):
            batched(on_device[first : first + args.batch], generator)

    _, seconds = timed(in_batches, device=device)
    project = args.images / seconds

    publish(
        {
            "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or device.type,
            "torch": torch.__version__,
            "image_size": args.size,
            "batch_size": args.batch,
            "cpu_threads": args.threads,
            "per_image_images_per_s": round(baseline, 1),
            "batched_images_per_s": round(project, 1),
            "ratio": round(project / baseline, 2),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
