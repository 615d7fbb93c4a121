"""One image's result, as predict yields it: a Prediction, or a Failure for a file that could
not be read. NumPy only: predict through ONNX Runtime makes them without torch."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from skinlesion.model.info import ModelInfo
from skinlesion.model.unknown import unknown_scores


@dataclasses.dataclass(frozen=True, kw_only=True)
class Prediction:
    """The model's answer for one image: `image` names it as given (a path, or `archive:member`
    for a zip member); `probabilities` maps every class, in the model's class order, to its
    probability; `unknown_score` is one minus the top probability, and `unknown` says whether
    it lies above the model's unknown threshold (None for a model without one); `metadata`
    holds the values a model that fuses metadata was given (None for any other)."""

    image: str
    probabilities: dict[str, float]
    unknown_score: float
    unknown: bool | None
    metadata: dict[str, str] | None = None

    @classmethod
    def of(
        cls,
        image: str,
        probabilities: np.ndarray,
        info: ModelInfo,
        metadata: dict[str, str] | None = None,
    ) -> Prediction:
        """The Prediction of `image` from the (C,) `probabilities` of the model `info` describes."""
        # scored in the classifier's float32, as evaluate scores it
        score = float(unknown_scores(probabilities[None])[0])
        threshold = info.unknown_threshold
        return cls(
            image=image,
            probabilities={name: float(p) for name, p in zip(info.classes, probabilities)},
            unknown_score=score,
            unknown=None if threshold is None else score > threshold,
            metadata=metadata,
        )

    @property
    def stem(self) -> str:
        """The image's file name without extension: its ISIC name."""
        return image_stem(self.image)

    @property
    def predicted(self) -> str:
        """The most probable class (the first of the model's order on a tie)."""
        return max(self.probabilities, key=self.probabilities.__getitem__)

    def top(self, count: int) -> list[tuple[str, float]]:
        """The `count` most probable classes and their probabilities, most probable first."""
        return sorted(self.probabilities.items(), key=lambda item: -item[1])[:count]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Failure:
    """A file predict could not read: `image` names it as given, `error` says why."""

    image: str
    error: str


# what predict yields for one image
Result = Prediction | Failure


def image_stem(image: str) -> str:
    """An input's file name without extension (a zip member's too, `archive.zip:dir/ISIC_1.jpg`)."""
    return Path(image).stem
