"""The model file of a training run: written at each new best epoch with what inference needs,
and completed after the last epoch with what is fitted on the fold's validation images (the
temperature, with `training.calibration: temperature`, and the unknown threshold)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from skinlesion.data.folds import FoldData
from skinlesion.data.metadata import FEATURES
from skinlesion.model.architectures import describe_weights, normalization
from skinlesion.model.checkpoint import load_for_inference, predict_rows
from skinlesion.model.inference import fit_temperature
from skinlesion.model.info import ModelInfo
from skinlesion.model.model_file import save_checkpoint
from skinlesion.model.unknown import KEEP_KNOWN, unknown_scores, unknown_threshold
from skinlesion.training.params import TrainingParams, TrainRun

log = logging.getLogger(__name__)


def save_model(path: Path, net: nn.Module, params: TrainRun, best: dict, classes: tuple[str, ...]) -> None:
    """The model file: weights, the classes it predicts, and what inference needs to preprocess
    images as training saw them."""
    mean, std = normalization(params.model.name)
    info = ModelInfo(
        arch=params.model.name,
        classes=classes,
        image_size=params.prepare.image_size,
        crop_border=params.prepare.crop_border,
        color_constancy=params.prepare.color_constancy,
        mean=mean,
        std=std,
        weights_source=describe_weights(params.model.name, params.model.weights),
        metadata=FEATURES if params.model.use_metadata else (),
        **best,
    )
    save_checkpoint(path, net, info)


def finish_model(model_path: Path, data: FoldData, device: torch.device, settings: TrainingParams) -> dict:
    """After the best epoch is chosen, on all of the fold's validation images: fit the temperature (with
    `calibration: temperature`) and then the unknown threshold, and add both to the model file.
    Returns them."""
    model, info = load_for_inference(model_path, device)  # no temperature yet: predicted at T = 1
    log_probabilities, y_true, loss = predict_rows(
        model, info, data.prepared, data.validation, data.where, device, settings.batch_size
    )
    fitted = {}
    if settings.calibration == "temperature":
        fitted["temperature"] = fit_temperature(torch.from_numpy(log_probabilities), torch.from_numpy(y_true))
        log.info(
            "calibration: temperature %.3f fitted on %d validation images (NLL %.4f at T = 1)",
            fitted["temperature"],
            len(y_true),
            loss,
        )
        log_probabilities = torch.log_softmax(torch.from_numpy(log_probabilities) / fitted["temperature"], 1).numpy()
    fitted["unknown_threshold"] = unknown_threshold(unknown_scores(np.exp(log_probabilities)))
    log.info(
        "unknown threshold %.4f: %.0f%% of the validation images score at or below it",
        fitted["unknown_threshold"],
        100 * KEEP_KNOWN,
    )
    save_checkpoint(model_path, model, dataclasses.replace(info, **fitted))
    return fitted
