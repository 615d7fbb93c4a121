"""What a model file holds besides its weights, as one typed, frozen record (ModelInfo).

Built in one place from the stored dict (`ModelInfo.from_stored`) and written back by
`ModelInfo.stored` for torch.save (skinlesion.model.checkpoint). Its defaults are those of a
file written before a field existed, so older model files still load: no metadata, no
temperature (1), no unknown threshold. No torch here: the command line and the model card
read it without loading torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from skinlesion.errors import WeightsError

# the test-time augmentations a model can be run with (skinlesion.model.inference.tta_views)
TTA = Literal["none", "flips", "dihedral"]
# what a file must hold to be a model of this project (besides the weights)
REQUIRED = ("arch", "classes", "image_size", "mean", "std")
# stored even at their defaults, as every model file has them
ALWAYS_STORED = (*REQUIRED, "crop_border", "color_constancy")
# what every fold model of an ensemble must share for their probabilities to be averaged over one input
SHARED = ("arch", "classes", "image_size", "crop_border", "color_constancy", "mean", "std", "metadata")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """A single model's, or the fold models' ensemble's, description (field order: the stored order)."""

    arch: str  # one of skinlesion.model.architectures.ARCHITECTURES
    classes: tuple[str, ...]  # the order of its outputs
    image_size: int  # pixels of the square input
    crop_border: bool = False  # the dermoscope frame cropped before resizing
    color_constancy: bool = False  # Shades of Gray applied before resizing
    mean: tuple[float, ...]  # per-channel normalisation of [0, 1] pixels
    std: tuple[float, ...]
    metadata: tuple[str, ...] = ()  # the metadata features it takes (skinlesion.data.metadata.FEATURES), or none
    weights_source: str = ""  # where its pretrained weights came from (architectures.describe_weights)
    epoch: int | None = None  # the best epoch on validation (a single model's)
    val_balanced_accuracy: float | None = None
    val_accuracy: float | None = None
    val_loss: float | None = None
    temperature: float = 1.0  # divides the logits; fitted on validation with training.calibration
    unknown_threshold: float | None = None  # an unknown score above it calls the image unknown
    out_of_fold: Mapping[str, Any] | None = None  # the ensemble's estimate on train+val
    members: tuple[ModelInfo, ...] = ()  # the ensemble's fold models, in fold order

    def __post_init__(self) -> None:
        for name in ("classes", "mean", "std", "metadata", "members"):  # lists as stored, tuples here
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def is_ensemble(self) -> bool:
        return bool(self.members)

    @property
    def per_model(self) -> tuple[ModelInfo, ...]:
        """The fold models of an ensemble, in fold order, else the model itself."""
        return self.members or (self,)

    @property
    def uses_metadata(self) -> bool:
        """Whether the model takes each image's metadata as a second input."""
        return bool(self.metadata)

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any], path: str | Path) -> ModelInfo:
        """The record of a dict that torch.load read from the model file `path` (named in the
        WeightsError when a required key is missing); its weights are not read."""
        missing = [key for key in REQUIRED if key not in stored]
        if missing:
            raise WeightsError(f"{path}: not a model of this project (missing {missing})")
        members = tuple(cls.from_stored(member, path) for member in stored.get("members", ()))
        fields = {field.name for field in dataclasses.fields(cls)} - {"members"}
        return cls(**{key: value for key, value in stored.items() if key in fields}, members=members)

    def stored(self) -> dict[str, Any]:
        """What the model file stores of this record (lists for tuples), in field order; a field
        at its default is left out, as in files written before it existed. An ensemble's
        members are stored with their weights (checkpoint.save_ensemble), not here."""
        stored = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "members" or (field.name not in ALWAYS_STORED and value == field.default):
                continue
            stored[field.name] = list(value) if isinstance(value, tuple) else value
        return stored
