"""Loss, optimiser and learning-rate schedule of the train stage, from training.* params."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from skinlesion.model.architectures import backbone_parameters, head
from skinlesion.model.device import autocast_dtype
from skinlesion.training.params import TrainingParams


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., 2017): cross-entropy scaled by (1 - p_true)^gamma, so that
    well-classified images count less. gamma = 0 is cross-entropy. logits: (N, C)."""

    def __init__(self, gamma: float):
        super().__init__()
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(logits, dim=1).gather(1, targets.view(-1, 1)).squeeze(1)  # (N,)
        return (-((1 - log_p.exp()) ** self.gamma) * log_p).mean()


def class_weights(targets: np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse class frequency, scaled so a balanced set gets weight 1 everywhere."""
    counts = np.bincount(targets, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, len(targets) / (num_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def make_criterion(settings: TrainingParams, train_targets: np.ndarray, num_classes: int) -> nn.Module:
    """The loss named by training.loss (label smoothing applies to the cross-entropies)."""
    if settings.loss == "focal":
        return FocalLoss(settings.focal_gamma)
    weight = class_weights(train_targets, num_classes) if settings.loss == "weighted_cross_entropy" else None
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=settings.label_smoothing)


def learning_rate_factor(epoch: int, settings: TrainingParams) -> float:
    """Multiplier of training.learning_rate in `epoch` (0-based)."""
    if settings.lr_schedule == "constant":
        return 1.0
    if epoch < settings.warmup_epochs:
        return (epoch + 1) / (settings.warmup_epochs + 1)
    progress = (epoch - settings.warmup_epochs) / max(1, settings.epochs - settings.warmup_epochs)
    return 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(
    model: nn.Module, settings: TrainingParams
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Adam (the published optimiser) and a per-epoch schedule of its learning rate.

    With training.backbone_lr_factor below 1 or head_warmup_epochs, the new head (group 0)
    and the pretrained backbone (group 1) learn at their own rates: the backbone at the factor
    times the head's, and not at all in the warm-up epochs. A frozen backbone (factor 0) is
    left out of the optimiser."""

    def schedule(epoch: int) -> float:
        return learning_rate_factor(epoch, settings)

    if settings.backbone_lr_factor == 1 and not settings.head_warmup_epochs:
        groups, schedules = [{"params": list(model.parameters())}], [schedule]
    else:
        groups, schedules = [{"params": list(head(model).parameters())}], [schedule]
        if settings.backbone_lr_factor:

            def backbone_schedule(epoch: int) -> float:
                warm = epoch >= settings.head_warmup_epochs
                return settings.backbone_lr_factor * warm * learning_rate_factor(epoch, settings)

            groups.append({"params": list(backbone_parameters(model))})
            schedules.append(backbone_schedule)
    optimizer = torch.optim.Adam(groups, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedules)
    return optimizer, scheduler


def make_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """The loss scaler fp16 autocast needs; for bf16 and fp32 it is there but does nothing."""
    return torch.amp.GradScaler(enabled=autocast_dtype(device, precision) == torch.float16)
