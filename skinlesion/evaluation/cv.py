"""Cross-validation's figures and the fold models' ensemble file.

The ensemble stage checks that the fold models can be averaged (they share their
preprocessing), measures the out-of-fold estimate (each train+val image predicted by the one
fold model that validated on it, never trained on it) and chooses the ensemble's unknown
threshold on those predictions, so on validation data only, as each fold model's own is; it
also gathers every fold's validation curves into one table. Evaluate reports each fold
model's test figures beside the ensemble's, with their mean and standard deviation.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from skinlesion.data.folds import fold_manifests
from skinlesion.errors import DataError
from skinlesion.evaluation.metrics import balanced_accuracy, classification_report
from skinlesion.evaluation.report_schema import CrossValidation, FoldFigures, FoldReport, OutOfFold
from skinlesion.model.checkpoint import build_checkpoint, predict_rows
from skinlesion.model.device import on_device
from skinlesion.model.info import SHARED, ModelInfo
from skinlesion.model.model_file import read_checkpoint
from skinlesion.model.unknown import unknown_scores, unknown_threshold


def shared_info(infos: list[ModelInfo], files: list[Path]) -> dict:
    """The SHARED fields of the fold models' infos (in the order of `files`); a DataError
    names the field and each file's value when they differ."""
    for key in SHARED:
        values = [getattr(info, key) for info in infos]
        if any(value != values[0] for value in values):
            shown = {
                str(path): list(value) if isinstance(value, tuple) else value for path, value in zip(files, values)
            }
            raise DataError(f"the fold models differ in {key} ({shown}): retrain them")
    return {key: getattr(infos[0], key) for key in SHARED}


def out_of_fold_figures(probabilities: np.ndarray, y_true: np.ndarray) -> dict:
    """The out-of-fold estimate from every train+val image's class probabilities (N, C), each
    from the fold model that validated on it: images, balanced accuracy, accuracy, and the
    unknown threshold that keeps KEEP_KNOWN of them known."""
    y_pred = probabilities.argmax(axis=1)
    return {
        "images": len(y_true),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred, probabilities.shape[1]),
        "accuracy": float((y_pred == y_true).mean()),
        "unknown_threshold": unknown_threshold(unknown_scores(probabilities)),
    }


def combine_folds(
    files: list[Path],
    table: pd.DataFrame,
    prepared: Path,
    where: str,
    device: torch.device,
    batch_size: int,
) -> tuple[list[dict], ModelInfo]:
    """The fold models' ensemble file's contents: the fold models as read (save_ensemble's
    `members`) and the ensemble's info (SHARED, the unknown threshold, `out_of_fold`). Fold k
    (`files[k]`) predicts its own validation rows of the fold table `table` (named `where`)."""
    checkpoints = [read_checkpoint(path) for path in files]  # each file read once
    # the members must agree on their classes (shared_info); evaluate checks them against the data's
    members = [build_checkpoint(checkpoint, path, None) for checkpoint, path in zip(checkpoints, files)]
    shared = shared_info([info for _, info in members], files)
    probabilities, labels = [], []
    for fold, (model, info) in enumerate(members):
        _, validation = fold_manifests(table, fold, where)
        model = on_device(model, device)
        logs, y_true, _ = predict_rows(model, info, prepared, validation, f"{where}, fold {fold}", device, batch_size)
        probabilities.append(np.exp(logs))
        labels.append(y_true)
    oof = out_of_fold_figures(np.concatenate(probabilities), np.concatenate(labels))
    return checkpoints, ModelInfo(**shared, unknown_threshold=oof.pop("unknown_threshold"), out_of_fold=oof)


def cross_validation(folds_logs: np.ndarray, y_true: np.ndarray, info: ModelInfo, bins: int) -> CrossValidation:
    """eval.json's `cv`: each fold model's test figures (`folds_logs`: their log class
    probabilities, (folds, N, C), from fold_predictions), their mean and sample standard
    deviation over the folds, and the out-of-fold estimate the ensemble stage measured on
    train+val (no test image in it). `info` is the ensemble's."""
    folds = {}
    for fold, (logs, member) in enumerate(zip(folds_logs, info.members)):
        folds[str(fold)] = FoldReport(
            test=FoldFigures.of(classification_report(y_true, np.exp(logs), info.classes, bins)),
            epoch=member.epoch,
            val_balanced_accuracy=member.val_balanced_accuracy,
        )
    tests = [report.test for report in folds.values()]
    return CrossValidation(
        folds=folds,
        test_mean=_over_folds(tests, np.mean, fewest=1),
        test_std=_over_folds(tests, lambda values: np.std(values, ddof=1), fewest=2),
        out_of_fold=OutOfFold(**info.out_of_fold),
    )


def _over_folds(tests: list[FoldFigures], statistic: Callable, *, fewest: int) -> FoldFigures:
    """Each figure's `statistic` over the folds that have it (None where fewer than `fewest` do)."""
    found = {
        name: [value for test in tests if (value := getattr(test, name)) is not None]
        for name in FoldFigures.model_fields
    }
    return FoldFigures(
        **{name: float(statistic(values)) if len(values) >= fewest else None for name, values in found.items()}
    )
