"""The model file's network: built from what skinlesion.model.model_file reads (the weights plus
what inference needs), ready for evaluate, gradcam and predict, and the images as it takes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from skinlesion.classes import check_labels
from skinlesion.data.dataset import ImageArrayDataset
from skinlesion.data.metadata import FEATURES, encode_metadata
from skinlesion.errors import WeightsError
from skinlesion.model.architectures import ARCHITECTURES, build_model
from skinlesion.model.device import on_device
from skinlesion.model.ensemble import FoldEnsemble
from skinlesion.model.inference import predict
from skinlesion.model.info import ModelInfo
from skinlesion.model.model_file import read_checkpoint
from skinlesion.transforms.normalize import normalize


def load_checkpoint(path: str | Path, classes: tuple[str, ...] | None = None) -> tuple[nn.Module, ModelInfo]:
    """Rebuild the model saved by `save_checkpoint`, or the fold models' FoldEnsemble saved by
    `save_ensemble`; returns (model in eval mode, its ModelInfo).

    With `classes`, the model must predict exactly those classes in that order (evaluate
    and gradcam score it against labels in the project's order).
    """
    return build_checkpoint(read_checkpoint(path), Path(path), classes)


def load_for_inference(
    path: str | Path, device: torch.device, classes: tuple[str, ...] | None = None
) -> tuple[nn.Module, ModelInfo]:
    """load_checkpoint's (model, info), the model on `device` in its memory format."""
    model, info = load_checkpoint(path, classes)
    return on_device(model, device), info


def build_checkpoint(checkpoint: dict, path: Path, classes: tuple[str, ...] | None) -> tuple[nn.Module, ModelInfo]:
    """load_checkpoint's (model, info) from the dict read_checkpoint read from `path`."""
    info = ModelInfo.from_stored(checkpoint, path)
    if not info.is_ensemble:
        return _build(checkpoint, info, path, classes), info
    models = [_build(stored, member, path, classes) for stored, member in zip(checkpoint["members"], info.members)]
    return FoldEnsemble(models, [member.temperature for member in info.members]).eval(), info


def _build(checkpoint: dict, info: ModelInfo, path: Path, classes: tuple[str, ...] | None) -> nn.Module:
    """The network of one model file's `checkpoint` (its weights) and `info`, in eval mode."""
    if "state_dict" not in checkpoint:
        raise WeightsError(f"{path}: not a model of this project (missing ['state_dict'])")
    if info.arch not in ARCHITECTURES:
        raise WeightsError(f"{path}: unknown architecture {info.arch!r}; known: {sorted(ARCHITECTURES)}")
    if classes is not None and info.classes != tuple(classes):
        raise WeightsError(f"{path}: the model predicts {list(info.classes)}, not {list(classes)} in that order")
    if info.metadata and info.metadata != FEATURES:
        raise WeightsError(
            f"{path}: the model encodes metadata as {list(info.metadata)}, this version as {list(FEATURES)}"
        )
    model = build_model(info.arch, len(info.classes), "none", len(info.metadata))
    try:
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except (RuntimeError, TypeError, AttributeError) as error:  # other keys or shapes; not a state dict at all
        raise WeightsError(
            f"{path}: weights do not fit {info.arch} with {len(info.classes)} classes: {error}"
        ) from error
    return model.eval()


def input_transform(info: ModelInfo) -> v2.Compose:
    """The normalisation the model was trained with."""
    return normalize(mean=info.mean, std=info.std)


def model_dataset(folder: Path, manifest: pd.DataFrame, info: ModelInfo, where: str) -> ImageArrayDataset:
    """The images of `manifest` (rows of prepare-split's arrays in `folder`) as the model in
    `info` takes them: normalised as in training and, for a model that fuses metadata, with
    their metadata (`where` names the manifest in errors: a label the model does not predict,
    metadata)."""
    check_labels(manifest["label"], info.classes, where)
    metadata = encode_metadata(manifest, where) if info.uses_metadata else None
    return ImageArrayDataset(folder, manifest, info.classes, input_transform(info), metadata=metadata)


def predict_rows(
    model: nn.Module,
    info: ModelInfo,
    folder: Path,
    manifest: pd.DataFrame,
    where: str,
    device: torch.device,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray, float]:
    """inference.predict over the rows of `manifest` (model_dataset's), with the model's
    temperature and no TTA: how validation images are predicted after
    training, for the temperature, the unknown threshold and the out-of-fold estimate."""
    dataset = model_dataset(folder, manifest, info, where)
    loader = DataLoader(dataset, batch_size=batch_size, pin_memory=device.type == "cuda")
    return predict(model, loader, device, "none", info.temperature)
