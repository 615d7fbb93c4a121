"""Inference as validation, evaluate and predict run it: class probabilities of a batch, with
optional test-time augmentation (TTA) and temperature scaling, and over a whole DataLoader;
and the temperature's fit. The unknown score is skinlesion.model.unknown's."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from skinlesion.model.device import memory_format
from skinlesion.model.info import TTA


def tta_views(images: torch.Tensor, tta: TTA) -> list[torch.Tensor]:
    """The views of a batch (N, C, H, W) that TTA averages over. none: the batch itself;
    flips: it and its mirror image (2 views); dihedral: the 8 symmetries of the square, four
    rotations by 90 degrees of it and of its mirror image (square images only)."""
    if tta == "none":
        return [images]
    mirrored = images.flip(-1)
    if tta == "flips":
        return [images, mirrored]
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"TTA dihedral needs square images, got {tuple(images.shape[-2:])}")
    return [torch.rot90(view, k, dims=(-2, -1)) for view in (images, mirrored) for k in range(4)]


def forward(model: nn.Module, images: torch.Tensor, metadata: torch.Tensor | None = None) -> torch.Tensor:
    """The logits of a batch: `model(images)`, or `model(images, metadata)` for a model that
    fuses each image's metadata (MetadataFusion)."""
    return model(images) if metadata is None else model(images, metadata)


def log_probabilities(
    model: nn.Module,
    images: torch.Tensor,
    tta: TTA = "none",
    temperature: float = 1.0,
    metadata: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log class probabilities (N, C) of a batch: the softmax of the logits divided by
    `temperature`, averaged over the TTA views (in probability space; the metadata is the same
    for every view), in full precision."""
    views = tta_views(images, tta)
    logs = [torch.log_softmax(forward(model, view, metadata).float() / temperature, dim=1) for view in views]
    return logs[0] if len(logs) == 1 else mean_probability(torch.stack(logs))


def mean_probability(log_probabilities: torch.Tensor) -> torch.Tensor:
    """(K, N, C) log class probabilities (of K views, or of K models) -> (N, C): the log of
    their mean probability."""
    return torch.logsumexp(log_probabilities, dim=0) - math.log(len(log_probabilities))


def device_batches(
    loader: DataLoader, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """The batches of `loader` (images, labels and, for a model that fuses metadata, metadata)
    as (images on `device` in its memory format, labels where the loader left them, metadata
    on `device` or None)."""
    for images, labels, *metadata in loader:
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format(device))
        yield images, labels, metadata[0].to(device, non_blocking=True) if metadata else None


@torch.no_grad()
def predict(
    model: nn.Module, loader: DataLoader, device: torch.device, tta: TTA = "none", temperature: float = 1.0
) -> tuple[np.ndarray, np.ndarray, float]:
    """Log class probabilities (N, C), true class indices (N,) and mean cross-entropy over
    `loader` (batches of images, labels and, for a model that fuses metadata, metadata).

    Always in full precision: validation and test scores do not depend on training.precision.
    """
    model.eval()
    probabilities, targets, losses = [], [], []
    for images, labels, inputs in device_batches(loader, device):  # all stays on the device: no waiting per batch
        logs = log_probabilities(model, images, tta, temperature, inputs)
        losses.append(nn.functional.nll_loss(logs, labels.to(device, non_blocking=True), reduction="sum"))
        probabilities.append(logs)
        targets.append(labels)
    y_true = torch.cat(targets).numpy()
    loss_sum = sum(torch.stack(losses).tolist())  # summed batch by batch in double precision
    return torch.cat(probabilities).cpu().numpy(), y_true, loss_sum / max(1, len(y_true))


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The temperature T > 0 that minimises the cross-entropy of softmax(logits / T) on
    (`logits`, `targets`): temperature scaling (Guo et al., 2017), one scalar, so the
    predicted classes do not change. Fitted on log T, by L-BFGS, and kept within [0.05, 20].
    Log-probabilities at T = 1 serve as `logits` as well (they differ by a constant per row)."""
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    logits, targets = logits.double(), targets.long()
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))
