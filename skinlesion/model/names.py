"""The names that params give a model's backbone and its device, for the params' schemas to check
without importing torch (skinlesion.model.architectures and skinlesion.model.device hold what
they name; a test keeps the two lists of backbones equal)."""

from typing import Literal

Architecture = Literal["densenet121", "resnet50", "efficientnet_b0"]
Device = Literal["auto", "cuda", "mps", "cpu"]
