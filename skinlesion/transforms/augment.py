"""The published augmentation (random resized crop, flips, rotation, colour jitter), per image,
and optionally dermoscopy-specific augmentation (hairs, dermoscope frame: dermoscopy.py).

The train stage draws every oversampled copy with it, afresh each epoch; real training images
get, by default, the original code's lighter online transform (`real_images: light`), or the
same augmentation (`augment`). augment-oversample shows example copies. Its params section
`augmentation` is defined here, for those two stages only.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torchvision.transforms import v2

from skinlesion.config import Section
from skinlesion.transforms.dermoscopy import DermoscopeFrame, Hairs
from skinlesion.transforms.normalize import normalize


class AugmentationParams(Section):
    rotation_range: float = Field(ge=0, le=180, description="degrees: rotations drawn from [-range, range]")
    h_flip: bool
    v_flip: bool
    color_jitter: tuple[float, float, float, float] = Field(description="brightness, contrast, saturation, hue")
    crop_scale: tuple[float, float] = Field(description="RandomResizedCrop's area range")
    seed: int = Field(
        description="which training images augment-oversample copies, and the draws of its example grid; "
        "training's own augmentation draws from training.seed"
    )
    hair: float = Field(ge=0, le=1, description="probability of drawing synthetic hairs over a training image")
    frame: float = Field(ge=0, le=1, description="probability of a dark circular dermoscope frame on a training image")
    real_images: Literal["augment", "light"] = Field(
        description="how real (not copied) training images are augmented each epoch: augment, as the copies; "
        "light, the original code's online transform (random resized crop of 8-100% of the area, "
        "horizontal flip, rotation up to 10 degrees)"
    )

    @model_validator(mode="after")
    def _ranges(self) -> AugmentationParams:
        if any(v < 0 for v in self.color_jitter) or self.color_jitter[3] > 0.5:
            raise ValueError("color_jitter: values must be >= 0 and hue <= 0.5")
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop_scale: must satisfy 0 < low <= high <= 1, got {list(self.crop_scale)}")
        return self


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


def train_transform(*, params: AugmentationParams, size: int) -> v2.Compose:
    """The augmentation, then normalisation: what the train stage applies to each image."""
    return v2.Compose([augment(params=params, size=size), normalize()])
