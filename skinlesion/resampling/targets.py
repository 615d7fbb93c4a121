"""Training images per class after resampling: the published table (NV and MEL 3500, every
other class 1500 on ISIC 2019). A class above its target is undersampled by K-Means, a class
below it is oversampled by augmentation."""

from __future__ import annotations

from pydantic import Field

from skinlesion.config import View
from skinlesion.errors import DataError


class ClassTargets(View):
    """The keys of the `sampling` section that set the targets (both resampling stages read them)."""

    majority_classes: tuple[str, ...] = Field(
        description="the classes whose target is `majority_target` (the published NV and MEL); each one of the data's"
    )
    majority_target: int = Field(gt=0, description="training images of each majority class after undersampling")
    minority_target: int = Field(gt=0, description="training images of every other class after oversampling")

    def targets(self, classes: tuple[str, ...]) -> dict[str, int]:
        """Training images per class of `classes` (the data's) after resampling, in their order."""
        unknown = [name for name in self.majority_classes if name not in classes]
        if unknown:
            raise DataError(
                f"params: sampling.majority_classes: {unknown} not among the data's classes {list(classes)} "
                "(prepare-split's classes.json, from the ground truth's columns)"
            )
        return {
            name: self.majority_target if name in self.majority_classes else self.minority_target for name in classes
        }


class OversampleTargets(ClassTargets):
    """The keys of the `sampling` section augment-oversample reads."""

    oversample: bool = Field(
        description="fill each class below its target with augmented copies (false: no copies, beyond the recipe)"
    )
