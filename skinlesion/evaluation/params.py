"""The params sections `evaluate` and `gradcam`, read by the evaluate and gradcam stages
(skinlesion.evaluation.report and .gradcam apply them); no torch here, so that check-params
runs without it."""

from __future__ import annotations

from pydantic import Field

from skinlesion.config import Section
from skinlesion.model.info import TTA


class EvaluateParams(Section):
    batch_size: int = Field(gt=0)
    bootstrap_resamples: int = Field(gt=0, description="lesions resampled for the 95% interval of balanced accuracy")
    calibration_bins: int = Field(gt=0, description="equal-width confidence bins of the ECE and reliability diagram")
    seed: int = Field(description="the lesions the bootstrap interval resamples")
    tta: TTA = Field(
        description="test-time augmentation: none, flips (2 views) or dihedral (8); probabilities averaged"
    )
    subgroup_min_images: int = Field(
        gt=0, description="fewest images an age band, sex or site must have to be scored (fewer: too small)"
    )


class GradcamParams(Section):
    correct_per_class: int = Field(ge=0, description="test images explained per class, rightly classified")
    wrong_per_class: int = Field(ge=0, description="and wrongly classified")
    seed: int = Field(description="which test images are explained")
