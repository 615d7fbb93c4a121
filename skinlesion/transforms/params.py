"""The params section `augmentation`, read by augment-oversample and train
(skinlesion.transforms.augment applies it); no torch here, so that check-params runs without it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from skinlesion.config import Section


class AugmentationParams(Section):
    rotation_range: float = Field(ge=0, le=180, description="degrees: rotations drawn from [-range, range]")
    h_flip: bool = Field(description="random horizontal flips of the oversampled copies")
    v_flip: bool = Field(description="random vertical flips of the oversampled copies")
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
