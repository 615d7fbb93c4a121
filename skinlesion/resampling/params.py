"""The params section `sampling`: the keys kmeans-undersample reads (UndersampleParams) and the
whole section (SamplingParams, which refuses an unknown key); no scikit-learn here, so that
check-params answers at once."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from skinlesion.resampling.targets import ClassTargets, OversampleTargets


class UndersampleParams(ClassTargets):
    """The keys of `sampling` that kmeans-undersample reads: the targets and how a class is cut."""

    undersample: Literal["kmeans", "random", "none"] = Field(
        description="how a class above its target is cut: kmeans (the recipe: drawn within K-Means clusters), "
        "random (drawn uniformly, as a baseline), or none (every training image kept)"
    )
    kmeans_clusters: int = Field(gt=0, description="K-Means clusters per undersampled class")
    seed: int = Field(description="K-Means' initialisation and the images it keeps")


class SamplingParams(UndersampleParams, OversampleTargets):
    """The whole `sampling` section: the class targets, the undersampling and the oversampling."""

    model_config = ConfigDict(extra="forbid")
