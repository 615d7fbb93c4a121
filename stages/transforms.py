"""The image transforms, in one place, so train, evaluate, gradcam and predict agree.

Images enter as uint8 tensors of shape (3, H, W), already at the model's input size
(prepare-split resized them once). Normalisation uses ImageNet statistics, which the
pretrained backbones expect.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from stages.params import AugmentationParams

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def augment(*, params: AugmentationParams, size: int) -> v2.Compose:
    """The published augmentation (crop, flips, rotation, colour jitter): uint8 in, uint8 out."""
    steps: list[torch.nn.Module] = [v2.RandomResizedCrop(size, scale=params.crop_scale, antialias=True)]
    if params.h_flip:
        steps.append(v2.RandomHorizontalFlip())
    if params.v_flip:
        steps.append(v2.RandomVerticalFlip())
    steps.append(v2.RandomRotation(params.rotation_range))
    steps.append(v2.ColorJitter(*params.color_jitter))
    return v2.Compose(steps)


def normalize(*, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> v2.Compose:
    """uint8 (3, H, W) -> normalised float32 (3, H, W)."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def train_transform(*, params: AugmentationParams, size: int) -> v2.Compose:
    """Online augmentation on top of the balanced set, then normalisation."""
    return v2.Compose([augment(params=params, size=size), normalize()])


def eval_transform(*, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> v2.Compose:
    """Evaluation preprocessing: normalisation only (images are stored at model size)."""
    return normalize(mean=mean, std=std)
