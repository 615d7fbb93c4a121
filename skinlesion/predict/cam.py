"""Grad-CAM overlays of the class predict gives each image: the torch classifier's network
explained by skinlesion.evaluation.gradcam, as the gradcam stage explains it (the mean of the
fold models' maps for an ensemble)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from skinlesion.evaluation.gradcam import class_maps, maps_note, save_overlays


def save_predicted_class_maps(
    model: nn.Module,
    batch: torch.Tensor,
    probabilities: torch.Tensor,
    metadata: torch.Tensor | None,
    images: list[np.ndarray],
    names: list[str],
    classes: tuple[str, ...],
    folder: Path,
) -> None:
    """Save in `folder`, for each of `images` (named `names`; decoded (H, W, 3) uint8, and as
    the model's input `batch`, (N, 3, H, W) with its (N, F) `metadata`), the Grad-CAM overlay
    of its most probable class in `probabilities` (N, C, in the order of `classes`), as
    `<folder>/<image stem>.png`."""
    folder.mkdir(parents=True, exist_ok=True)
    cams = class_maps(model, batch, probabilities.argmax(dim=1).to(batch.device), metadata)
    note = maps_note(model).removeprefix(", ")
    for image, cam, row, name in zip(images, cams.cpu(), probabilities, names):
        predicted = classes[int(row.argmax())]
        title = f"{name}: {predicted} (p={row.max():.2f})"
        label = f"Grad-CAM: {predicted}" + (f" ({note})" if note else "")
        save_overlays(image, {label: cam.numpy()}, title, folder / f"{Path(name).stem}.png")
