"""Training images per class after resampling: the published table (NV and MEL 3500, every
other class 1500 on ISIC 2019). A class above its target is undersampled by K-Means, a class
below it is oversampled by augmentation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from skinlesion.classes import CLASSES
from skinlesion.config import View


class ClassTargets(View):
    """The keys of the `sampling` section that set the targets (both resampling stages read them)."""

    majority_classes: tuple[Literal[CLASSES], ...]
    majority_target: int = Field(gt=0, description="training images of each majority class after undersampling")
    minority_target: int = Field(gt=0, description="training images of every other class after oversampling")

    def targets(self) -> dict[str, int]:
        """Training images per class after resampling, in ISIC column order."""
        return {
            name: self.majority_target if name in self.majority_classes else self.minority_target for name in CLASSES
        }


class OversampleTargets(ClassTargets):
    """The keys of the `sampling` section augment-oversample reads."""

    oversample: bool = Field(
        description="fill each class below its target with augmented copies (false: no copies, beyond the recipe)"
    )
