"""The names that params give a model's backbone and its device, and the view of the device key
the stages after train read, for the params' schemas to check without importing torch
(skinlesion.model.architectures and skinlesion.model.device hold what they name; a test keeps
the two lists of backbones equal).

A backbone's name says which library builds it: a bare name is torchvision's, `timm/NAME` is
timm's (PyTorch Image Models, the optional extra `.[transfer]`)."""

from typing import Literal

from skinlesion.config import View

Architecture = Literal[
    "densenet121",
    "resnet50",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
    "convnext_tiny",
    "timm/tf_efficientnet_lite0",
]
Device = Literal["auto", "cuda", "mps", "cpu"]
TIMM_PREFIX = "timm/"


class TrainingDevice(View):
    """The key of `training` that the stages after train read: they predict where training ran."""

    device: Device
