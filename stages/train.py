"""Stage train: DenseNet121 (or another torchvision backbone) on the balanced training set.

Adam and cross-entropy as published. The kept checkpoint is the epoch with the best
validation balanced accuracy; the test split is never read here. Per-epoch train and val
loss, accuracy and balanced accuracy are logged with DVCLive. With `training.processes` > 1
it trains with DistributedDataParallel under torchrun (stages/distributed.py).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import math
import os
import random
import sys
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler, Subset
from torchvision.transforms import v2
from tqdm import tqdm

from stages.batch_augment import BatchAugment
from stages.cores import available_cores
from stages.dataset import ImageArrayDataset
from stages.distributed import World, backend_for, check_world, connect, cuda_device, disconnect, gather, launch, launched_world, share_buffers
from stages.metrics import balanced_accuracy
from stages.model import autocast_dtype, build_model, compile_model, configure_backends, memory_format, predict, save_checkpoint, select_device
from stages.optim import make_criterion, make_optimizer
from stages.params import CLASSES, Params, TrainingParams, load_params
from stages.resume import fingerprint, load_state, save_state
from stages.store import read_manifest
from stages.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, train_transform

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training cannot go on; the message says what to change."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_loader(dataset: torch.utils.data.Dataset, *, batch_size: int, shuffle: bool, workers: int, device: torch.device, seed: int, sampler: Sampler | None = None) -> DataLoader:
    # Workers are started anew each epoch, seeded from the generator, which fit() reseeds per
    # epoch: epoch k draws the same order and augmentations whether or not the run resumed.
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(seed),
    )


def crowded_cores(workers: int, processes: int, cores: int) -> str | None:
    """A warning when `processes` training processes with `workers` loader workers each want
    more CPU cores than the `cores` this machine gives them; None when they fit."""
    busy = (workers + 1) * processes
    if busy <= cores:
        return None
    return (
        f"training.num_workers {workers} with {processes} training process(es) makes {busy} busy processes "
        f"on {cores} CPU cores: each training process competes with the loader workers for a core, and on a GPU "
        f"that process launches every kernel (docs/benchmarks.md). Set training.num_workers to at most {max(0, cores // processes - 1)}."
    )


def train_step(model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, images: torch.Tensor, labels: torch.Tensor, *, device: torch.device, dtype: torch.dtype | None, memory_format: torch.memory_format, clip_norm: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a batch; returns (loss, logits), both still on `device`.

    dtype: autocast dtype (None for full precision); memory_format: layout of the batch;
    clip_norm: clip the gradients' global norm to this (0: no clipping).
    """
    images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
    labels = labels.to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        logits = model(images)
        loss = criterion(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip_norm > 0:
        scaler.unscale_(optimizer)  # clip the true gradients, not the fp16-scaled ones
        nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    scaler.step(optimizer)
    scaler.update()
    return loss.detach(), logits.detach()


def train_one_epoch(model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, device: torch.device, epoch: int, settings: TrainingParams, world: World = World(), augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
    """One pass over `loader`; returns mean loss, accuracy and balanced accuracy.

    `augment`, if given, turns each uint8 batch into the model's input on `device`.

    With several processes the figures cover all of them (DistributedSampler repeats a few
    images to give every process as many batches).
    """
    model.train()
    dtype = autocast_dtype(device, settings.precision)
    scaler = torch.amp.GradScaler(enabled=dtype == torch.float16)  # bf16 and fp32 need no scaling
    loss_sum, predictions, targets = 0.0, [], []

    def settle(step: int, loss: torch.Tensor, count: int) -> float:
        value = loss.item()  # waits for the device to finish that step
        if not math.isfinite(value):
            raise FloatingPointError(f"loss is {value} at epoch {epoch}, step {step}: lower training.learning_rate")
        return value * count

    # A step's loss is read once the next step is queued, so the host never waits for an idle
    # device; predictions stay on the device until the epoch ends.
    pending = None
    for step, (images, labels) in enumerate(tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False, disable=not world.main)):
        if augment is not None:
            images = augment(images.to(device, non_blocking=True))
        loss, logits = train_step(model, criterion, optimizer, scaler, images, labels, device=device, dtype=dtype, memory_format=memory_format(device), clip_norm=settings.grad_clip_norm)
        predictions.append(logits.argmax(dim=1))
        targets.append(labels)
        if pending:
            loss_sum += settle(*pending)
        pending = (step, loss, len(labels))
    if pending:
        loss_sum += settle(*pending)
    parts = gather((loss_sum, torch.cat(predictions).cpu().numpy(), torch.cat(targets).numpy()), world)
    y_pred, y_true = np.concatenate([part[1] for part in parts]), np.concatenate([part[2] for part in parts])
    return {
        "loss": sum(part[0] for part in parts) / len(y_true),
        "accuracy": float((y_pred == y_true).mean()),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred, len(CLASSES)),
    }


def validate(model: nn.Module, loader: DataLoader, device: torch.device, world: World = World()) -> dict[str, float]:
    """Loss, accuracy and balanced accuracy on `loader`; with several processes, each one
    predicts its share and the figures cover all shares."""
    probabilities, y_true, loss = predict(model, loader, device)
    y_pred = probabilities.argmax(axis=1)
    if world.distributed:
        parts = gather((y_pred, y_true, loss * len(y_true)), world)
        y_pred, y_true = np.concatenate([part[0] for part in parts]), np.concatenate([part[1] for part in parts])
        loss = sum(part[2] for part in parts) / len(y_true)
    return {
        "loss": loss,
        "accuracy": float((y_pred == y_true).mean()),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred, len(CLASSES)),
    }


def fit(params: Params, balanced_dir: Path, prepared_dir: Path, model_path: Path, live, state_path: Path | None = None, state: dict | None = None, world: World = World()) -> dict:
    """Train for `training.epochs`, keep the best epoch on val; returns the best epoch's record.

    `live` is a dvclive.Live (or anything with its log_metric, summary, step and next_step).
    With `state_path`, the training state is saved there after every epoch; `state`, one
    read back by load_state(), resumes that run after its last completed epoch. With a
    distributed `world` (process group already joined), this process trains on its share
    and only rank 0 writes.
    """
    settings = params.training
    seed_everything(settings.seed)
    device = select_device(settings.device)
    if world.distributed and device.type == "cuda":
        device = cuda_device(world)
    configure_backends(device)
    image_size = params.prepare.image_size
    on_device = BatchAugment(params.augmentation, image_size).to(device) if settings.augment_on == "device" else None
    loader_transform = v2.Identity() if on_device else train_transform(params=params.augmentation, size=image_size)
    train_set = ImageArrayDataset(balanced_dir / "train.npy", read_manifest(balanced_dir / "train.csv"), loader_transform)
    val_set = ImageArrayDataset(prepared_dir / "val.npy", read_manifest(prepared_dir / "val.csv"), eval_transform())
    batch_size, workers = settings.batch_size // world.size, settings.num_workers
    warning = crowded_cores(workers, int(os.environ.get("LOCAL_WORLD_SIZE", world.size)), available_cores())
    if warning and world.main:
        log.warning(warning)
    train_sampler = DistributedSampler(train_set, num_replicas=world.size, rank=world.rank, seed=settings.seed) if world.distributed else None
    train_loader = make_loader(train_set, batch_size=batch_size, shuffle=True, workers=workers, device=device, seed=settings.seed, sampler=train_sampler)
    val_share = Subset(val_set, range(world.rank, len(val_set), world.size)) if world.distributed else val_set
    val_loader = make_loader(val_share, batch_size=batch_size, shuffle=False, workers=workers, device=device, seed=settings.seed)

    net = build_model(params.model.name, params.model.num_classes, params.model.weights)
    net = net.to(device, memory_format=memory_format(device))
    optimizer, scheduler = make_optimizer(net, settings)
    criterion = make_criterion(settings, train_set.targets, len(CLASSES)).to(device)
    log.info("training %s on %s: %d train, %d val images%s", params.model.name, device, len(train_set), len(val_set), f" (process {world.rank} of {world.size})" if world.distributed else "")

    run = fingerprint(params, [balanced_dir / "train.csv", prepared_dir / "val.csv"])
    best, start = {"epoch": -1, "val_balanced_accuracy": -1.0}, 0
    if state:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        best, start = state["best"], state["epoch"] + 1
        live.step = start
        log.info("resuming from epoch %d (best so far: epoch %d)", start, best["epoch"])
    # the step trains through DDP and torch.compile when asked; `net` itself is validated and saved
    model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None) if world.distributed else net
    model = compile_model(model, settings.compile)
    for epoch in range(start, settings.epochs):
        with _explain_faults(params, epoch, resumable=state_path is not None and epoch > 0):
            torch.manual_seed(world.seed(settings.seed, epoch))  # augmentation in this process
            train_loader.generator.manual_seed(world.seed(settings.seed, epoch))  # order and worker seeds
            if train_sampler:
                train_sampler.set_epoch(epoch)
            augment = functools.partial(on_device, generator=torch.Generator().manual_seed(world.seed(settings.seed, epoch))) if on_device else None
            train_metrics = train_one_epoch(model, criterion, optimizer, train_loader, device, epoch, settings, world, augment)
            train_metrics["learning_rate"] = scheduler.get_last_lr()[0]
            scheduler.step()
            share_buffers(net, world)
            val_metrics = validate(net, val_loader, device, world)
        for split, values in (("train", train_metrics), ("val", val_metrics)):
            for name, value in values.items():
                live.log_metric(f"{split}/{name}", value)
        log.info("epoch %d: train %s, val %s", epoch, _fmt(train_metrics), _fmt(val_metrics))
        if val_metrics["balanced_accuracy"] > best["val_balanced_accuracy"]:
            best = {"epoch": epoch, "val_balanced_accuracy": val_metrics["balanced_accuracy"], "val_accuracy": val_metrics["accuracy"], "val_loss": val_metrics["loss"]}
            if world.main:
                save_checkpoint(
                    model_path, net, arch=params.model.name, classes=list(CLASSES), image_size=image_size,
                    crop_border=params.prepare.crop_border, color_constancy=params.prepare.color_constancy,
                    mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), **best,
                )
        stop = bool(settings.early_stopping_patience) and epoch - best["epoch"] >= settings.early_stopping_patience
        if state_path and world.main:
            done = stop or epoch == settings.epochs - 1
            save_state(state_path, fingerprint=run, epoch=epoch, best=best, complete=done, model=net, optimizer=optimizer, scheduler=scheduler)
        live.summary["best"] = best
        live.next_step()
        if stop:
            log.info("early stop after epoch %d: no better val balanced accuracy for %d epochs", epoch, settings.early_stopping_patience)
            break
    return best


@contextlib.contextmanager
def _explain_faults(params: Params, epoch: int, resumable: bool) -> Iterator[None]:
    """Turn running out of memory and a dying loader worker into errors that say what to change."""
    resume = (
        f" The state after epoch {epoch - 1} is saved: dvc repro with the same params resumes from epoch {epoch}; changed params start over."
        if resumable else ""
    )
    settings = params.training
    try:
        yield
    except torch.OutOfMemoryError as error:
        raise TrainingError(
            f"out of memory in epoch {epoch} with training.batch_size {settings.batch_size} "
            f"({settings.batch_size // settings.processes} per process), prepare.image_size {params.prepare.image_size}, "
            f"model.name {params.model.name}, training.precision {settings.precision}: lower training.batch_size "
            f"or prepare.image_size, or use training.precision bf16 on a GPU that has it.{resume}"
        ) from error
    except RuntimeError as error:
        if "DataLoader worker" not in str(error):
            raise
        raise TrainingError(
            f"a data loader worker died in epoch {epoch} ({error}). It is most often the machine running out of "
            f"memory (see dmesg for the OOM killer) or, in a container, a small /dev/shm (docker --shm-size): "
            f"lower training.num_workers ({settings.num_workers}) or training.batch_size ({settings.batch_size}).{resume}"
        ) from error


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.4f}" for name, value in values.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--balanced", type=Path, required=True, help="augment-oversample output folder")
    parser.add_argument("--prepared", type=Path, required=True, help="prepare-split output folder (val is read)")
    parser.add_argument("--model", type=Path, required=True, help="where to write the best checkpoint")
    parser.add_argument("--live", type=Path, required=True, help="DVCLive folder for per-epoch metrics")
    parser.add_argument("--state", type=Path, required=True, help="training state saved after each epoch, for resuming")
    args = parser.parse_args()
    world = launched_world()
    prefix = f"rank {world.rank}: " if world.distributed else ""
    logging.basicConfig(level=logging.INFO, format=f"%(levelname)s {prefix}%(name)s: %(message)s")
    params = load_params()
    settings = params.training
    if settings.processes > 1 and "WORLD_SIZE" not in os.environ:
        sys.exit(launch(settings, sys.argv[1:], select_device(settings.device)))  # torchrun reruns this module
    check_world(world, settings)
    if world.distributed:
        connect(world, backend_for(settings, select_device(settings.device)), settings.timeout_s)
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from dvclive import Live  # imported here: fit() itself needs only torch

    # DVCLive keeps the killed run's curves only if the run will really be resumed
    state = load_state(args.state, fingerprint(params, [args.balanced / "train.csv", args.prepared / "val.csv"]))
    live = Live(str(args.live), dvcyaml=False, save_dvc_exp=False, report=None, resume=state is not None) if world.main else contextlib.nullcontext(_Silent())
    try:
        with live as logger:
            best = fit(params, args.balanced, args.prepared, args.model, logger, state_path=args.state, state=state, world=world)
    finally:
        disconnect()
    log.info("best epoch %d: val balanced accuracy %.4f", best["epoch"], best["val_balanced_accuracy"])


class _Silent:
    """What the processes other than rank 0 log to: nothing."""

    def __init__(self) -> None:
        self.step, self.summary = 0, {}

    def log_metric(self, name: str, value: float) -> None:
        pass

    def next_step(self) -> None:
        pass


if __name__ == "__main__":
    main()
