"""The published augmentation (random resized crop, flips, rotation, colour jitter), per image.

augment-oversample draws its fixed copies with it, and the train stage its online
augmentation; its params section `augmentation` is defined here, for those two stages only.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torchvision.transforms import v2

from skinlesion.config import Section
from skinlesion.transforms.normalize import normalize


class AugmentationParams(Section):
    rotation_range: float = Field(ge=0, le=180, description="degrees: rotations drawn from [-range, range]")
    h_flip: bool
    v_flip: bool
    color_jitter: tuple[float, float, float, float] = Field(description="brightness, contrast, saturation, hue")
    crop_scale: tuple[float, float] = Field(description="RandomResizedCrop's area range")
    seed: int

    @model_validator(mode="after")
    def _ranges(self) -> AugmentationParams:
        if any(v < 0 for v in self.color_jitter) or self.color_jitter[3] > 0.5:
            raise ValueError("color_jitter: values must be >= 0 and hue <= 0.5")
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop_scale: must satisfy 0 < low <= high <= 1, got {list(self.crop_scale)}")
        return self


def augment(*, params: AugmentationParams, size: int) -> v2.Compose:
    """The published augmentation: uint8 (3, H, W) in, uint8 (3, size, size) out."""
    steps: list[torch.nn.Module] = [v2.RandomResizedCrop(size, scale=params.crop_scale, antialias=True)]
    if params.h_flip:
        steps.append(v2.RandomHorizontalFlip())
    if params.v_flip:
        steps.append(v2.RandomVerticalFlip())
    steps.append(v2.RandomRotation(params.rotation_range))
    steps.append(v2.ColorJitter(*params.color_jitter))
    return v2.Compose(steps)


def train_transform(*, params: AugmentationParams, size: int) -> v2.Compose:
    """Online augmentation on top of the balanced set, then normalisation."""
    return v2.Compose([augment(params=params, size=size), normalize()])
