"""Training throughput: the project's path against the original code's plain loop, one run.

Both train DenseNet121 on the same generated JPEGs at the same image size and batch size:
- baseline: the original code's training loop: fp32, default memory layout, a DataLoader
  that opens and decodes the JPEG of every image at every step and applies the original
  train transform to it (RandomResizedCrop, horizontal flip, rotation by up to 10 degrees),
  and each step's loss and correct count read back as soon as the step is queued. The
  original's DataLoader has no worker processes; --baseline-workers gives it some (4 by
  default), so the baseline here is faster than the original as written;
- project: the decoded arrays of prepare-split (memory-mapped), the project's train
  transform, and the train stage's own epoch loop (train_one_epoch: channels_last on CUDA,
  `--precision`, pinned memory, the loss checked for every step); with --augment-on device
  the workers only copy pixels and each batch is augmented on the device
  (training.augment_on: device); with --compile the model runs under torch.compile.
It also times the project's data loader alone and the model step alone (on tensors already
on the device), to show whether the model ever waits for data, and on CUDA counts the host
waits for the device per step of the project's loop. Prints a JSON report.

    python -m benchmarks.train_throughput --images 512 --size 224 --steps 30
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import platform
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from benchmarks import publish
from benchmarks.timing import measure, timed
from skinlesion.classes import CLASSES
from skinlesion.config import load_params
from skinlesion.cores import available_cores
from skinlesion.data.arrays import ImageWriter
from skinlesion.data.dataset import ImageArrayDataset
from skinlesion.data.images import load_image
from skinlesion.data.isic import IMAGE_DIR, ImageSource
from skinlesion.data.prepare import decode_all
from skinlesion.data.synthetic import SampleParams, plan_sample, write_sample
from skinlesion.model.architectures import build_model
from skinlesion.model.device import configure_backends, select_device
from skinlesion.seeding import seed_everything
from skinlesion.training.epoch import train_one_epoch
from skinlesion.training.params import TrainRun
from skinlesion.training.trainer import assemble_trainer
from skinlesion.transforms.augment import train_transform
from skinlesion.transforms.normalize import normalize
from skinlesion.transforms.params import AugmentationParams


class JpegDataset(Dataset):
    """The baseline's data path: decode the JPEG at every access and apply the original
    code's train transform to it."""

    def __init__(self, paths: list[Path], targets: np.ndarray, size: int):
        self.paths, self.targets = paths, targets
        self.transform = v2.Compose(
            [
                v2.RandomResizedCrop(size, antialias=True),
                v2.RandomHorizontalFlip(),
                v2.RandomRotation(10),
                v2.PILToTensor(),
                normalize(),
            ]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("RGB")), int(self.targets[index])


def published_augmentation(params: TrainRun) -> AugmentationParams:
    """The published augmentation of params.yaml, every image augmented alike (as on the device)."""
    return params.augmentation.model_copy(update={"real_images": "augment"})


def make_data(work: Path, count: int, size: int, workers: int) -> tuple[list[Path], np.ndarray, Path, pd.DataFrame]:
    """Generated JPEGs and, as prepare-split would make them, their decoded array and manifest."""
    rows = plan_sample(SampleParams(num_images=count, min_per_class=8, scale=0.25, seed=0))
    write_sample(rows, 0.25, work / "sample")
    paths = [work / "sample" / IMAGE_DIR / f"{row['image']}.jpg" for row in rows]
    decode = functools.partial(load_image, size=size)
    with ImageWriter(work / "train.npy", len(paths), size) as array:
        for i, (pixels, _) in enumerate(
            decode_all(ImageSource(work / "sample"), [row["image"] for row in rows], decode, workers)
        ):
            array.write(i, pixels)
    manifest = pd.DataFrame(
        {
            "image": [r["image"] for r in rows],
            "label": [r["label"] for r in rows],
            "lesion_id": "",
            "split": "train",
            "row": np.arange(len(rows)),
            "augmented": False,
        }
    )
    targets = manifest["label"].map(CLASSES.index).to_numpy()
    return paths, targets, work / "train.npy", manifest


def time_plain_loop(loader: DataLoader, device: torch.device, *, steps: int, warmup: int) -> float:
    """Images per second of the original code's loop (fp32, default layout, the loss and the
    correct count read at every step) over `steps` steps after `warmup`, data loading included."""
    torch.manual_seed(0)
    model = build_model("densenet121", len(CLASSES), "none").to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    criterion = nn.CrossEntropyLoss()
    batches, sizes = _forever(loader), []

    def step() -> None:
        images, labels = next(batches)
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        logits = model(images)
        loss = criterion(logits, labels)
        loss.backward()
        optimizer.step()
        # read back as soon as the step is queued, as the original's running loss and correct count are
        loss.item()
        (logits.argmax(dim=1) == labels.to(device)).sum().item()
        sizes.append(len(labels))

    timing = measure(step, warmup=warmup, number=steps, device=device)
    return sum(sizes[warmup:]) / timing.best_s


def project_loop(loader, device: torch.device, params: TrainRun, targets: np.ndarray) -> Callable[[int], None]:
    """The train stage's epoch loop on a fresh model of `params`, as the train stage builds it
    (assemble_trainer), as a function of how many batches of `loader` (cycled) to train on."""
    seed_everything(0)
    trainer = assemble_trainer(params, device, loader, loader, targets)
    batches, generator = _forever(loader), torch.Generator().manual_seed(0)

    def run(count: int) -> None:
        train_one_epoch(
            dataclasses.replace(trainer, train_loader=itertools.islice(batches, count)),
            0,
            params.training,
            generator=generator,
        )

    return run


def time_project(run: Callable[[int], None], device: torch.device, batch: int, *, steps: int, warmup: int) -> float:
    """Images per second of `run` (project_loop) over `steps` batches after `warmup`."""
    run(warmup)
    _, seconds = timed(lambda: run(steps), device=device)
    return steps * batch / seconds


def host_waits_per_step(run: Callable[[int], None], device: torch.device, steps: int) -> float | None:
    """How often per step the host waits for the device in `run` (CUDA's sync debug mode); None off CUDA.

    The loop reads each step's loss once the next step is queued: about one wait per step."""
    if device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run(steps)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(warning.message) for warning in caught) / steps


def time_loader(loader: DataLoader, *, steps: int, warmup: int) -> float:
    """Images per second the loader alone delivers."""
    batches, sizes = _forever(loader), []
    timing = measure(lambda: sizes.append(len(next(batches)[1])), warmup=warmup, number=steps)
    return sum(sizes[warmup:]) / timing.best_s


def time_model_step(device: torch.device, batch: int, params: TrainRun, *, steps: int, warmup: int) -> float:
    """Images per second of the project's loop (augmenting on the device, if `params` say so)
    on one batch already on the device."""
    size = params.prepare.image_size
    if params.training.augment_on == "loader":
        images = torch.randn(batch, 3, size, size, device=device)
    else:
        images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    labels = torch.randint(0, len(CLASSES), (batch,))  # on the host, as the loader delivers them
    run = project_loop([(images, labels)], device, params, labels.numpy())
    return time_project(run, device, batch, steps=steps, warmup=warmup)


def _forever(loader):
    while True:
        yield from loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=available_cores(), help="project loader workers")
    parser.add_argument("--baseline-workers", type=int, default=4, help="baseline loader workers")
    parser.add_argument(
        "--precision", choices=("fp32", "bf16", "fp16"), default="fp32", help="the project path's training.precision"
    )
    parser.add_argument(
        "--augment-on", choices=("loader", "device"), default="loader", help="the project path's training.augment_on"
    )
    parser.add_argument(
        "--compile",
        choices=("none", "default", "reduce-overhead", "max-autotune"),
        default="none",
        help="the project path's training.compile (the warmup steps include compiling)",
    )
    parser.add_argument("--out", type=Path, help="also write the report here (JSON)")
    args = parser.parse_args()
    device = select_device("auto")
    configure_backends(device)  # for both paths: the baseline gets TF32 and cuDNN autotuning too

    with tempfile.TemporaryDirectory() as tmp:
        paths, targets, array_path, manifest = make_data(Path(tmp), args.images, args.size, args.workers)
        pin = device.type == "cuda"
        common = dict(batch_size=args.batch, shuffle=True, drop_last=True, pin_memory=pin)
        baseline_loader = DataLoader(
            JpegDataset(paths, targets, args.size),
            num_workers=args.baseline_workers,
            persistent_workers=args.baseline_workers > 0,
            **common,
        )
        params = load_params(TrainRun)
        augmentation = published_augmentation(params)
        changes = dict(
            precision=args.precision,
            augment_on=args.augment_on,
            compile=args.compile,
            learning_rate=1e-4,
            grad_clip_norm=0.0,
            loss="cross_entropy",
            label_smoothing=0.0,
        )
        params = params.model_copy(
            update={
                "augmentation": augmentation,
                "prepare": params.prepare.model_copy(update={"image_size": args.size}),
                "training": params.training.model_copy(update=changes),
            }
        )
        project_set = ImageArrayDataset(
            array_path.parent,
            manifest,
            CLASSES,
            v2.Identity() if args.augment_on == "device" else train_transform(params=augmentation, size=args.size),
        )
        project_loader = DataLoader(
            project_set, num_workers=args.workers, persistent_workers=args.workers > 0, **common
        )
        timing = dict(steps=args.steps, warmup=args.warmup)
        baseline = time_plain_loop(baseline_loader, device, **timing)
        run = project_loop(project_loader, device, params, targets)
        project = time_project(run, device, args.batch, **timing)
        waits = host_waits_per_step(run, device, min(args.steps, 10))
        loader_alone = time_loader(project_loader, **timing)
        model_alone = time_model_step(device, args.batch, params, **timing)

    report = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or device.type,
        "torch": torch.__version__,
        "image_size": args.size,
        "batch_size": args.batch,
        "precision": args.precision,
        "loader_workers": args.workers,
        "augment_on": args.augment_on,
        "compile": args.compile,
        "timed_steps": args.steps,
        "baseline_images_per_s": round(baseline, 1),
        "project_images_per_s": round(project, 1),
        "speedup": round(project / baseline, 2),
        "project_loader_images_per_s": round(loader_alone, 1),
        "model_step_images_per_s": round(model_alone, 1),
        "loader_over_model_step": round(loader_alone / model_alone, 2),
        "host_waits_per_step": waits,
    }
    publish(report, args.out)


if __name__ == "__main__":
    main()
