"""The published augmentation (random resized crop, flips, rotation, colour jitter), per image,
and optionally dermoscopy-specific augmentation (hairs, dermoscope frame: dermoscopy.py).

The train stage draws every oversampled copy with it, afresh each epoch; real training images
get, by default, the original code's lighter online transform (`real_images: light`), or the
same augmentation (`augment`). augment-oversample shows example copies. Its params section
`augmentation` is skinlesion.transforms.params's.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from skinlesion.transforms.dermoscopy import DermoscopeFrame, Hairs
from skinlesion.transforms.normalize import IMAGENET_MEAN, IMAGENET_STD, normalize
from skinlesion.transforms.params import AugmentationParams


def for_real_images(params: AugmentationParams) -> AugmentationParams:
    """The augmentation a real (not copied) training image gets each epoch."""
    if params.real_images == "augment":
        return params
    return params.model_copy(
        update=dict(rotation_range=10, h_flip=True, v_flip=False, color_jitter=(0, 0, 0, 0), crop_scale=(0.08, 1.0))
    )


def augment(*, params: AugmentationParams, size: int) -> v2.Compose:
    """The published augmentation, then hairs and frame when asked for: uint8 (3, H, W) in,
    uint8 (3, size, size) out."""
    steps: list[torch.nn.Module] = [v2.RandomResizedCrop(size, scale=params.crop_scale, antialias=True)]
    if params.h_flip:
        steps.append(v2.RandomHorizontalFlip())
    if params.v_flip:
        steps.append(v2.RandomVerticalFlip())
    steps.append(v2.RandomRotation(params.rotation_range))
    steps.append(v2.ColorJitter(*params.color_jitter))
    if params.hair:  # off, they draw nothing from the generator: the other draws stay as they were
        steps.append(Hairs(params.hair))
    if params.frame:
        steps.append(DermoscopeFrame(params.frame))
    return v2.Compose(steps)


def train_transform(
    *,
    params: AugmentationParams,
    size: int,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> v2.Compose:
    """The augmentation, then normalisation (the backbone's `mean` and `std`): what the train
    stage applies to each image."""
    return v2.Compose([augment(params=params, size=size), normalize(mean=mean, std=std)])
