"""The training loop: Adam and cross-entropy as published, the best epoch kept on validation.

The test split is never read here. With a distributed `World` (several processes under
torchrun) every process trains on its share of each epoch, figures are gathered from all of
them, and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset
from torchvision.transforms import v2
from tqdm import tqdm

from skinlesion.classes import CLASSES
from skinlesion.cores import available_cores
from skinlesion.data.arrays import read_manifest
from skinlesion.data.dataset import ImageArrayDataset
from skinlesion.data.folds import FoldData
from skinlesion.data.metadata import FEATURES, encode_metadata
from skinlesion.evaluation.metrics import balanced_accuracy
from skinlesion.model.architectures import build_model
from skinlesion.model.checkpoint import load_checkpoint, model_dataset, save_checkpoint
from skinlesion.model.device import autocast_dtype, compile_model, configure_backends, memory_format, select_device
from skinlesion.model.inference import (
    KEEP_KNOWN,
    fit_temperature,
    forward,
    predict,
    unknown_scores,
    unknown_threshold,
)
from skinlesion.training.distributed import World, cuda_device, gather, share_buffers
from skinlesion.training.optim import make_criterion, make_optimizer, make_scaler
from skinlesion.training.params import TrainingParams, TrainRun
from skinlesion.training.resume import fingerprint, save_state
from skinlesion.transforms.augment import for_real_images, train_transform
from skinlesion.transforms.batched import BatchAugment
from skinlesion.transforms.normalize import IMAGENET_MEAN, IMAGENET_STD, normalize

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training cannot go on; the message says what to change."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    workers: int,
    device: torch.device,
    seed: int,
    sampler: Sampler | None = None,
) -> DataLoader:
    # Workers are started anew each epoch, seeded from the generator, which run_epoch() reseeds per
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
        f"on {cores} CPU cores: each training process competes with the loader workers for a core, and on a "
        f"GPU that process launches every kernel (docs/benchmarks.md). Set training.num_workers to at most "
        f"{max(0, cores // processes - 1)}."
    )


def epoch_scores(loss: float, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """What is logged for each split and epoch: mean loss, accuracy and balanced accuracy."""
    return {
        "loss": loss,
        "accuracy": float((y_pred == y_true).mean()),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred, len(CLASSES)),
    }


def train_step(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    layout: torch.memory_format,
    clip_norm: float = 0.0,
    metadata: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a batch; returns (loss, logits), both still on `device`.

    dtype: autocast dtype (None for full precision); layout: memory format of the batch;
    clip_norm: clip the gradients' global norm to this (0: no clipping); metadata: the
    batch's metadata, for a model that fuses it.
    """
    images = images.to(device, non_blocking=True).contiguous(memory_format=layout)
    labels = labels.to(device, non_blocking=True)
    if metadata is not None:
        metadata = metadata.to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        logits = forward(model, images, metadata)
        loss = criterion(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip_norm > 0:
        scaler.unscale_(optimizer)  # clip the true gradients, not the fp16-scaled ones
        nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    scaler.step(optimizer)
    scaler.update()
    return loss.detach(), logits.detach()


@dataclasses.dataclass
class Trainer:
    """Everything one training run steps through: built once, by `build_trainer`."""

    net: nn.Module  # the model that is validated and saved
    model: nn.Module  # what the step runs: `net`, under DDP and torch.compile when asked
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler  # scales fp16 losses; a no-op for bf16 and fp32
    train_loader: DataLoader
    val_loader: DataLoader
    device: torch.device
    augment: BatchAugment | None  # augments each batch on the device (training.augment_on: device)

    def save_state(self, path: Path, **record) -> None:
        """The state to resume from after an epoch: `record` (fingerprint, epoch, best, complete)
        and the model, optimiser, schedule and loss scaler."""
        parts = {"model": self.net, "optimizer": self.optimizer, "scheduler": self.scheduler, "scaler": self.scaler}
        save_state(path, **record, **parts)


def train_one_epoch(
    trainer: Trainer,
    epoch: int,
    settings: TrainingParams,
    world: World = World(),
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """One pass over the training loader; returns its epoch_scores. With several processes the
    figures cover all of them (DistributedSampler repeats a few images to even the shares)."""
    trainer.model.train()
    device, dtype = trainer.device, autocast_dtype(trainer.device, settings.precision)
    loss_sum, predictions, targets = 0.0, [], []

    def settle(step: int, loss: torch.Tensor, count: int) -> float:
        value = loss.item()  # waits for the device to finish that step
        if not math.isfinite(value):
            raise FloatingPointError(f"loss is {value} at epoch {epoch}, step {step}: lower training.learning_rate")
        return value * count

    # A step's loss is read once the next step is queued, so the host never waits for an idle
    # device; predictions stay on the device until the epoch ends.
    pending = None
    batches = tqdm(trainer.train_loader, desc=f"epoch {epoch}", unit="batch", leave=False, disable=not world.main)
    for step, (images, labels, *metadata) in enumerate(batches):
        if trainer.augment is not None:
            images = trainer.augment(images.to(device, non_blocking=True), generator=generator)
        loss, logits = train_step(
            trainer.model,
            trainer.criterion,
            trainer.optimizer,
            trainer.scaler,
            images,
            labels,
            device=device,
            dtype=dtype,
            layout=memory_format(device),
            clip_norm=settings.grad_clip_norm,
            metadata=metadata[0] if metadata else None,
        )
        predictions.append(logits.argmax(dim=1))
        targets.append(labels)
        if pending:
            loss_sum += settle(*pending)
        pending = (step, loss, len(labels))
    if pending:
        loss_sum += settle(*pending)
    parts = gather((loss_sum, torch.cat(predictions).cpu().numpy(), torch.cat(targets).numpy()), world)
    y_pred, y_true = np.concatenate([part[1] for part in parts]), np.concatenate([part[2] for part in parts])
    return epoch_scores(sum(part[0] for part in parts) / len(y_true), y_true, y_pred)


def validate(model: nn.Module, loader: DataLoader, device: torch.device, world: World = World()) -> dict[str, float]:
    """epoch_scores on `loader`; with several processes, each one predicts its share and the
    figures cover all shares."""
    log_probabilities, y_true, loss = predict(model, loader, device)
    y_pred = log_probabilities.argmax(axis=1)
    if world.distributed:
        parts = gather((y_pred, y_true, loss * len(y_true)), world)
        y_pred, y_true = np.concatenate([part[0] for part in parts]), np.concatenate([part[1] for part in parts])
        loss = sum(part[2] for part in parts) / len(y_true)
    return epoch_scores(loss, y_true, y_pred)


def build_loaders(
    params: TrainRun, data: FoldData, device: torch.device, world: World, on_device: bool
) -> tuple[DataLoader, DataLoader]:
    """The training loader (augmenting per image unless `on_device`) and this process's share of
    the validation images.

    Training items are the rows of the balanced manifest, read from prepare-split's arrays; an
    oversampled copy is its source image, augmented afresh each epoch.
    """
    settings, size, augmentation = params.training, params.prepare.image_size, params.augmentation
    transform, copy_transform = v2.Identity(), None
    if not on_device:
        transform = train_transform(params=for_real_images(augmentation), size=size)
        if augmentation.real_images != "augment":
            copy_transform = train_transform(params=augmentation, size=size)
    manifest, use_metadata = read_manifest(data.balanced), params.model.use_metadata
    metadata = encode_metadata(manifest, str(data.balanced)) if use_metadata else None
    train_set = ImageArrayDataset(data.prepared, manifest, transform, copy_transform, metadata)
    val_metadata = encode_metadata(data.validation, data.where) if use_metadata else None
    val_set = ImageArrayDataset(data.prepared, data.validation, normalize(), metadata=val_metadata)
    warning = crowded_cores(
        settings.num_workers, int(os.environ.get("LOCAL_WORLD_SIZE", world.size)), available_cores()
    )
    if warning and world.main:
        log.warning(warning)
    loader = functools.partial(
        make_loader, batch_size=settings.batch_size // world.size, workers=settings.num_workers, device=device
    )
    if not world.distributed:
        return loader(train_set, shuffle=True, seed=settings.seed), loader(val_set, shuffle=False, seed=settings.seed)
    sampler = DistributedSampler(train_set, num_replicas=world.size, rank=world.rank, seed=settings.seed)
    val_share = Subset(val_set, range(world.rank, len(val_set), world.size))
    return (
        loader(train_set, shuffle=True, seed=settings.seed, sampler=sampler),
        loader(val_share, shuffle=False, seed=settings.seed),
    )


def build_trainer(params: TrainRun, data: FoldData, world: World = World()) -> Trainer:
    """Device, data, model, loss and optimiser of a run of `params`."""
    settings = params.training
    device = select_device(settings.device)
    if world.distributed and device.type == "cuda":
        device = cuda_device(world)
    configure_backends(device)
    on_device = settings.augment_on == "device"
    train_loader, val_loader = build_loaders(params, data, device, world, on_device)
    metadata_features = len(FEATURES) if params.model.use_metadata else 0
    net = build_model(params.model.name, params.model.num_classes, params.model.weights, metadata_features)
    net = net.to(device, memory_format=memory_format(device))
    optimizer, scheduler = make_optimizer(net, settings)
    model = net
    if world.distributed:
        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    process = f" (process {world.rank} of {world.size})" if world.distributed else ""
    train_set = train_loader.dataset
    log.info("training %s on %s: %d train images%s", params.model.name, device, len(train_set), process)
    return Trainer(
        net=net,
        model=compile_model(model, settings.compile),
        criterion=make_criterion(settings, train_set.targets, len(CLASSES)).to(device),
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=make_scaler(device, settings.precision),
        train_loader=train_loader,
        val_loader=val_loader,
        device=device,
        augment=BatchAugment(params.augmentation, params.prepare.image_size).to(device) if on_device else None,
    )


def restore(trainer: Trainer, state: dict) -> tuple[dict, int]:
    """Load a saved training state into `trainer`; returns the best epoch so far and the next epoch."""
    trainer.net.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.scaler.load_state_dict(state["scaler"])
    return state["best"], state["epoch"] + 1


def run_epoch(trainer: Trainer, epoch: int, settings: TrainingParams, world: World) -> tuple[dict, dict]:
    """Train one epoch, then validate; returns (train scores with the learning rate, val scores).

    Every random draw of the epoch is seeded from (seed, epoch, rank), so a resumed run draws
    what an uninterrupted one would."""
    seed = world.seed(settings.seed, epoch)
    torch.manual_seed(seed)  # augmentation in this process
    trainer.train_loader.generator.manual_seed(seed)  # order and worker seeds
    if isinstance(trainer.train_loader.sampler, DistributedSampler):
        trainer.train_loader.sampler.set_epoch(epoch)
    generator = torch.Generator().manual_seed(seed) if trainer.augment else None
    train_scores = train_one_epoch(trainer, epoch, settings, world, generator)
    train_scores["learning_rate"] = trainer.scheduler.get_last_lr()[0]
    trainer.scheduler.step()
    share_buffers(trainer.net, world)
    return train_scores, validate(trainer.net, trainer.val_loader, trainer.device, world)


def fit(
    params: TrainRun,
    data: FoldData,
    model_path: Path,
    live,
    state_path: Path | None = None,
    state: dict | None = None,
    world: World = World(),
) -> dict:
    """Train for `training.epochs`, keep the best epoch on val; returns the best epoch's record.

    `live` is a dvclive.Live (or a MemoryLive). With `state_path`, the training state is saved
    there after every epoch; `state`, one read back by load_state(), resumes that run after
    its last completed epoch.
    """
    settings = params.training
    seed_everything(settings.seed)
    trainer = build_trainer(params, data, world)
    best, start = {"epoch": -1, "val_balanced_accuracy": -1.0}, 0
    if state:
        best, start = restore(trainer, state)
        live.step = start
        log.info("resuming from epoch %d (best so far: epoch %d)", start, best["epoch"])
    run = fingerprint(params, data)
    for epoch in range(start, settings.epochs):
        with _explain_faults(params, epoch, resumable=state_path is not None and epoch > 0):
            scores = dict(zip(("train", "val"), run_epoch(trainer, epoch, settings, world)))
        for split, values in scores.items():
            for name, value in values.items():
                live.log_metric(f"{split}/{name}", value)
        log.info("epoch %d: %s", epoch, "; ".join(f"{split} {_fmt(values)}" for split, values in scores.items()))
        if scores["val"]["balanced_accuracy"] > best["val_balanced_accuracy"]:
            best = {
                "epoch": epoch,
                **{f"val_{name}": scores["val"][name] for name in ("balanced_accuracy", "accuracy", "loss")},
            }
            if world.main:
                _save_model(model_path, trainer.net, params, best)
        stop = bool(settings.early_stopping_patience) and epoch - best["epoch"] >= settings.early_stopping_patience
        if state_path and world.main:
            done = stop or epoch == settings.epochs - 1
            trainer.save_state(state_path, fingerprint=run, epoch=epoch, best=best, complete=done)
        live.summary["best"] = best
        live.next_step()
        if stop:
            log.info("early stop after epoch %d: no better val balanced accuracy since epoch %d", epoch, best["epoch"])
            break
    if world.main:
        best = {**best, **finish_model(model_path, data, trainer.device, settings)}
        live.summary["best"] = best
    return best


def finish_model(model_path: Path, data: FoldData, device: torch.device, settings: TrainingParams) -> dict:
    """After the best epoch is chosen, on all of the fold's validation images: fit the temperature (with
    `calibration: temperature`) and then the unknown threshold, and add both to the model file.
    Returns them."""
    model, info = load_checkpoint(model_path)
    model = model.to(device, memory_format=memory_format(device))
    val_set = model_dataset(data.prepared, data.validation, info, data.where)
    log_probabilities, y_true, loss = predict(model, DataLoader(val_set, batch_size=settings.batch_size), device)
    fitted = {}
    if settings.calibration == "temperature":
        fitted["temperature"] = fit_temperature(torch.from_numpy(log_probabilities), torch.from_numpy(y_true))
        log.info(
            "calibration: temperature %.3f fitted on %d validation images (NLL %.4f at T = 1)",
            fitted["temperature"],
            len(y_true),
            loss,
        )
        log_probabilities = torch.log_softmax(torch.from_numpy(log_probabilities) / fitted["temperature"], 1).numpy()
    fitted["unknown_threshold"] = unknown_threshold(unknown_scores(np.exp(log_probabilities)))
    log.info(
        "unknown threshold %.4f: %.0f%% of the validation images score at or below it",
        fitted["unknown_threshold"],
        100 * KEEP_KNOWN,
    )
    save_checkpoint(model_path, model, **{**info, **fitted})
    return fitted


def _save_model(path: Path, net: nn.Module, params: TrainRun, best: dict) -> None:
    """The model file: weights, and what inference needs to preprocess images as training saw them."""
    save_checkpoint(
        path,
        net,
        arch=params.model.name,
        classes=list(CLASSES),
        image_size=params.prepare.image_size,
        crop_border=params.prepare.crop_border,
        color_constancy=params.prepare.color_constancy,
        mean=list(IMAGENET_MEAN),
        std=list(IMAGENET_STD),
        **({"metadata": list(FEATURES)} if params.model.use_metadata else {}),
        **best,
    )


@contextlib.contextmanager
def _explain_faults(params: TrainRun, epoch: int, resumable: bool) -> Iterator[None]:
    """Turn running out of memory and a dying loader worker into errors that say what to change."""
    resume = (
        f" The state after epoch {epoch - 1} is saved: dvc repro with the same params resumes from epoch {epoch}; "
        "changed params start over."
        if resumable
        else ""
    )
    settings = params.training
    try:
        yield
    except torch.OutOfMemoryError as error:
        raise TrainingError(
            f"out of memory in epoch {epoch} with training.batch_size {settings.batch_size} "
            f"({settings.batch_size // settings.processes} per process), prepare.image_size "
            f"{params.prepare.image_size}, model.name {params.model.name}, training.precision "
            f"{settings.precision}: lower training.batch_size or prepare.image_size, or use training.precision "
            f"bf16 on a GPU that has it.{resume}"
        ) from error
    except RuntimeError as error:
        if "DataLoader worker" not in str(error):
            raise
        raise TrainingError(
            f"a data loader worker died in epoch {epoch} ({error}). It is most often the machine running out of "
            f"memory (see dmesg for the OOM killer) or, in a container, a small /dev/shm (docker --shm-size): "
            f"lower training.num_workers ({settings.num_workers}) or training.batch_size "
            f"({settings.batch_size}).{resume}"
        ) from error


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.4f}" for name, value in values.items())
