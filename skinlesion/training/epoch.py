"""One epoch: the optimisation steps over the training loader, then validation; the figures
logged for each (loss, accuracy, balanced accuracy). With several processes each trains on
its share and the figures cover all of them."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from skinlesion.errors import TrainingError
from skinlesion.evaluation.metrics import balanced_accuracy
from skinlesion.model.architectures import freeze_backbone_statistics
from skinlesion.model.device import autocast_dtype, memory_format
from skinlesion.model.inference import forward, predict
from skinlesion.seeding import seed_everything
from skinlesion.training.distributed import World, gather, share_buffers
from skinlesion.training.params import TrainingParams
from skinlesion.training.trainer import Trainer


def epoch_scores(loss: float, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """What is logged for each split and epoch: mean loss, accuracy and balanced accuracy."""
    return {
        "loss": loss,
        "accuracy": float((y_pred == y_true).mean()),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred),
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
    if settings.backbone_lr_factor == 0 or epoch < settings.head_warmup_epochs:  # only the head learns
        freeze_backbone_statistics(trainer.net)
    device, dtype = trainer.device, autocast_dtype(trainer.device, settings.precision)
    loss_sum, predictions, targets = 0.0, [], []

    def settle(step: int, loss: torch.Tensor, count: int) -> float:
        value = loss.item()  # waits for the device to finish that step
        if not math.isfinite(value):
            raise TrainingError(f"loss is {value} at epoch {epoch}, step {step}: lower training.learning_rate")
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


def run_epoch(trainer: Trainer, epoch: int, settings: TrainingParams, world: World) -> tuple[dict, dict]:
    """Train one epoch, then validate; returns (train scores with the learning rate, val scores).

    Every random draw of the epoch is seeded from (seed, epoch, rank), so a resumed run draws
    what an uninterrupted one would."""
    seed = world.seed(settings.seed, epoch)
    seed_everything(seed)  # augmentation in this process
    trainer.train_loader.generator.manual_seed(seed)  # order and worker seeds
    if isinstance(trainer.train_loader.sampler, DistributedSampler):
        trainer.train_loader.sampler.set_epoch(epoch)
    generator = torch.Generator().manual_seed(seed) if trainer.augment else None
    train_scores = train_one_epoch(trainer, epoch, settings, world, generator)
    train_scores["learning_rate"] = trainer.scheduler.get_last_lr()[0]
    trainer.scheduler.step()
    share_buffers(trainer.net, world)
    return train_scores, validate(trainer.net, trainer.val_loader, trainer.device, world)
