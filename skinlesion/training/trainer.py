"""What one training run steps through (the Trainer: model, loss, optimiser, loaders, device),
built once from the params and the fold's data, and restored from a saved state to resume."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from skinlesion.classes import CLASSES
from skinlesion.data.folds import FoldData
from skinlesion.data.metadata import FEATURES
from skinlesion.model.architectures import backbone_parameters, build_model, normalization
from skinlesion.model.device import compile_model, configure_backends, on_device, select_device
from skinlesion.training.distributed import World, cuda_device
from skinlesion.training.loaders import build_loaders
from skinlesion.training.optim import make_criterion, make_optimizer, make_scaler
from skinlesion.training.params import TrainRun
from skinlesion.training.resume import save_state
from skinlesion.transforms.batched import BatchAugment

log = logging.getLogger(__name__)


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


def build_trainer(params: TrainRun, data: FoldData, world: World = World()) -> Trainer:
    """Device, data, model, loss and optimiser of a run of `params` on the fold's data."""
    device = select_device(params.training.device)
    if world.distributed and device.type == "cuda":
        device = cuda_device(world)
    configure_backends(device)
    augment_on_device = params.training.augment_on == "device"
    train_loader, val_loader = build_loaders(params, data, device, world, augment_on_device)
    process = f" (process {world.rank} of {world.size})" if world.distributed else ""
    train_set = train_loader.dataset
    log.info("training %s on %s: %d train images%s", params.model.name, device, len(train_set), process)
    return assemble_trainer(params, device, train_loader, val_loader, train_set.targets, world, data.classes)


def assemble_trainer(
    params: TrainRun,
    device: torch.device,
    train_loader: Iterable,
    val_loader: Iterable,
    targets: np.ndarray,
    world: World = World(),
    classes: tuple[str, ...] = CLASSES,
) -> Trainer:
    """A fresh model of `params` on `device` predicting `classes`, its loss, optimiser and
    schedule, around the loaders (`targets`: the training labels, which a weighted loss counts)."""
    settings = params.training
    metadata_features = len(FEATURES) if params.model.use_metadata else 0
    net = build_model(params.model.name, len(classes), params.model.weights, metadata_features)
    if settings.backbone_lr_factor == 0:
        for parameter in backbone_parameters(net):
            parameter.requires_grad_(False)
    net = on_device(net, device)
    optimizer, scheduler = make_optimizer(net, settings)
    model = net
    if world.distributed:
        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    augment = None
    if settings.augment_on == "device":
        mean, std = normalization(params.model.name)
        augment = BatchAugment(params.augmentation, params.prepare.image_size, mean, std).to(device)
    return Trainer(
        net=net,
        model=compile_model(model, settings.compile),
        criterion=make_criterion(settings, targets, len(classes)).to(device),
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=make_scaler(device, settings.precision),
        train_loader=train_loader,
        val_loader=val_loader,
        device=device,
        augment=augment,
    )


def restore(trainer: Trainer, state: dict) -> tuple[dict, int]:
    """Load a saved training state into `trainer`; returns the best epoch so far and the next epoch."""
    trainer.net.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.scaler.load_state_dict(state["scaler"])
    return state["best"], state["epoch"] + 1
