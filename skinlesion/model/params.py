"""The params section `model`: which backbone, its pretrained weights and the metadata head
(the classes are the data's: prepare-split's classes.json). Read by the train stage and the
model card; no torch here, so that check-params answers at once."""

from __future__ import annotations

from pydantic import Field

from skinlesion.config import Section
from skinlesion.model.names import Architecture


class ModelParams(Section):
    name: Architecture = Field(
        description="the backbone: torchvision's by its name, timm's as timm/NAME (densenet121 is the published one)"
    )
    weights: str = Field(
        description="imagenet (through the backbone's library), packaged (ImageNet weights a registry package ships), "
        "none, or the path of a weights file"
    )
    use_metadata: bool = Field(
        description="join each image's age, sex and anatomical site (missing values flagged as missing) "
        "with its pooled image features before the classifier (winning ISIC 2019 entry)"
    )
