"""The model's input preprocessing, the same in train, evaluate, gradcam and predict.

Images enter as uint8 tensors of shape (3, H, W), already at the model's input size
(prepare-split resized them once). Normalisation uses ImageNet statistics, which the
pretrained backbones expect; a model file records the statistics it was trained with.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(*, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> v2.Compose:
    """uint8 (3, H, W) -> normalised float32 (3, H, W)."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
