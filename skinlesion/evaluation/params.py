"""The params sections `evaluate` and `gradcam`, read by the evaluate and gradcam stages
(skinlesion.evaluation.report and .gradcam apply them); no torch here, so that check-params
runs without it."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from skinlesion.config import Section, View
from skinlesion.model.info import TTA


class ScoringParams(View):
    """How a model is scored, on the test split and on each external set: the `evaluate` keys
    both stages read (not `external`, so that adding a set reruns neither the test split's
    scoring nor another set's)."""

    batch_size: int = Field(gt=0, description="test images per forward pass")
    bootstrap_resamples: int = Field(gt=0, description="lesions resampled for the 95% interval of balanced accuracy")
    calibration_bins: int = Field(gt=0, description="equal-width confidence bins of the ECE and reliability diagram")
    seed: int = Field(description="the lesions the bootstrap interval resamples")
    tta: TTA = Field(
        description="test-time augmentation: none, flips (2 views) or dihedral (8); probabilities averaged"
    )
    subgroup_min_images: int = Field(
        gt=0, description="fewest images an age band, sex or site must have to be scored (fewer: too small)"
    )


class EvaluateParams(ScoringParams):
    """The whole `evaluate` section: the scoring, and the external test sets."""

    model_config = Section.model_config
    external: dict[str, str] = Field(
        description="external test sets scored beside the test split: name -> a folder in data.root's layout "
        "(ISIC_2019_Training_GroundTruth.csv, ISIC_2019_Training_Input/, optionally "
        "ISIC_2019_Training_Metadata.csv); a path relative to the repository or absolute. {} for none"
    )

    @field_validator("external")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
                raise ValueError(f"external: {name!r} is not a name of letters, digits, _ and - (it names files)")
        return value


class GradcamParams(Section):
    correct_per_class: int = Field(ge=0, description="test images explained per class, rightly classified")
    wrong_per_class: int = Field(ge=0, description="and wrongly classified")
    seed: int = Field(description="which test images are explained")
