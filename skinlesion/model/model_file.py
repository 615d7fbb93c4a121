"""The model file on disk: weights plus what inference needs, written by train (one fold's model)
and by ensemble (the fold models together), read back without building a network (torch alone:
the model card reads a file's description without torchvision; skinlesion.model.checkpoint
builds the network)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from skinlesion.atomic import atomic_file
from skinlesion.errors import WeightsError
from skinlesion.model.info import ModelInfo


def save_checkpoint(path: str | Path, model: nn.Module, info: ModelInfo) -> None:
    """Save the weights and what inference needs (`info`)."""
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    with atomic_file(path) as tmp:
        torch.save({"state_dict": state, **info.stored()}, tmp)


def save_ensemble(path: str | Path, members: list[dict], info: ModelInfo) -> None:
    """Save the fold models `members` (read_checkpoint's dicts of save_checkpoint's files) as one
    model file, with the ensemble's `info` (the preprocessing they share, its unknown threshold,
    its out-of-fold estimate)."""
    with atomic_file(path) as tmp:
        torch.save({"members": members, **info.stored()}, tmp)


def read_checkpoint(path: str | Path) -> dict:
    """The dict that save_checkpoint or save_ensemble wrote to `path` (tensors on the CPU), read
    without running any code a crafted file may hold."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"{path}: not a loadable model file ({error})") from error
    if not isinstance(checkpoint, dict):
        raise WeightsError(f"{path}: not a model of this project (holds a {type(checkpoint).__name__})")
    return checkpoint
