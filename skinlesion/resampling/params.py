"""The params section `sampling`, read whole by kmeans-undersample (skinlesion.resampling.kmeans
applies it); no scikit-learn here, so that check-params answers at once."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from skinlesion.resampling.targets import ClassTargets


class SamplingParams(ClassTargets):
    """The whole `sampling` section: the class targets and the clustering."""

    model_config = ConfigDict(extra="forbid")
    undersample: Literal["kmeans", "random", "none"] = Field(
        description="how a class above its target is cut: kmeans (the recipe: drawn within K-Means clusters), "
        "random (drawn uniformly, as a baseline), or none (every training image kept)"
    )
    kmeans_clusters: int = Field(gt=0, description="K-Means clusters per undersampled class")
    seed: int = Field(description="K-Means' initialisation and the images it keeps")
