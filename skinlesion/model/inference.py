"""Batched inference over a DataLoader, as validation and evaluate run it."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from skinlesion.model.device import memory_format


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[np.ndarray, np.ndarray, float]:
    """Class probabilities (N, C), true class indices (N,) and mean cross-entropy over `loader`.

    Always in full precision: validation and test scores do not depend on training.precision.
    """
    model.eval()
    probabilities, targets, losses = [], [], []
    for images, labels in loader:  # everything stays on the device until the end: no waiting per batch
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format(device))
        logits = model(images).float()
        losses.append(nn.functional.cross_entropy(logits, labels.to(device, non_blocking=True), reduction="sum"))
        probabilities.append(torch.softmax(logits, dim=1))
        targets.append(labels)
    y_true = torch.cat(targets).numpy()
    loss_sum = sum(torch.stack(losses).tolist())  # summed batch by batch in double precision
    return torch.cat(probabilities).cpu().numpy(), y_true, loss_sum / max(1, len(y_true))
