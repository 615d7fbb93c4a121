"""What evaluate writes about the test split: the metrics (balanced accuracy first, with a 95%
bootstrap interval over lesions), one row of predictions per image, and the curves' data.

Probabilities use the model file's temperature (1 when it has none) and evaluate.tta. With the
model file's unknown threshold, `test.unknown_rate` is the share of test images (all of known
classes) that the unknown score would call unknown. For the fold models' ensemble `test` is the
ensemble's, and `cv` holds each fold model's figures (skinlesion.evaluation.cv). The report is
skinlesion.evaluation.report_schema's EvalReport, as written to metrics/eval.json.

Its params section `evaluate` is skinlesion.evaluation.params's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from skinlesion.atomic import atomic_dir, atomic_file
from skinlesion.config import View
from skinlesion.data.split import lesion_groups
from skinlesion.evaluation.cv import cross_validation
from skinlesion.evaluation.metrics import (
    bootstrap_interval,
    classification_report,
    one_vs_rest_curves,
    reliability,
)
from skinlesion.evaluation.params import ScoringParams
from skinlesion.evaluation.report_schema import EvalReport, FoldEnsemble, SingleModel, TestReport
from skinlesion.evaluation.subgroups import subgroup_report
from skinlesion.model.checkpoint import model_dataset
from skinlesion.model.ensemble import fold_predictions
from skinlesion.model.inference import TTA, mean_probability, predict
from skinlesion.model.info import ModelInfo
from skinlesion.model.names import TrainingDevice
from skinlesion.model.unknown import unknown_scores


class EvaluateRun(View):
    """The params evaluate reads."""

    training: TrainingDevice
    evaluate: ScoringParams


@dataclass(frozen=True)
class Scores:
    """A model's predictions on the test split and what eval.json says of the model."""

    log_probabilities: np.ndarray  # (N, C)
    y_true: np.ndarray  # (N,) class indices
    loss: float  # mean cross-entropy of the reported probabilities
    model: SingleModel | FoldEnsemble  # eval.json's `model`, less the unknown threshold
    folds_logs: np.ndarray | None = None  # (folds, N, C) for the fold models' ensemble: each fold model's


def score_model(model: torch.nn.Module, info: ModelInfo, loader: DataLoader, device: torch.device, tta: TTA) -> Scores:
    """The test predictions of the model that load_checkpoint gave as (`model`, `info`). For the
    fold models' ensemble each fold model runs once (fold_predictions) and the ensemble's
    probabilities are their mean; `folds_logs` keeps the folds' own for cv.cross_validation."""
    if not info.is_ensemble:
        log_probabilities, y_true, loss = predict(model, loader, device, tta, info.temperature)
        described = SingleModel(
            epoch=info.epoch,
            val_balanced_accuracy=info.val_balanced_accuracy,
            temperature=info.temperature,
            metadata=info.uses_metadata,
        )
        return Scores(log_probabilities, y_true, loss, described)
    folds_logs, y_true = fold_predictions(model, loader, device, tta)
    log_probabilities = mean_probability(torch.from_numpy(folds_logs)).numpy()
    loss = float(-log_probabilities[np.arange(len(y_true)), y_true].mean())
    described = FoldEnsemble(folds=len(info.members), metadata=info.uses_metadata)
    return Scores(log_probabilities, y_true, loss, described, folds_logs)


def score_images(
    model: torch.nn.Module,
    info: ModelInfo,
    device: torch.device,
    folder: Path,
    manifest: pd.DataFrame,
    where: str,
    params: ScoringParams,
) -> tuple[EvalReport, Scores]:
    """eval_metrics of the images of `manifest` (in prepare-split's arrays in `folder`; `where`
    names the manifest in errors), and the Scores they come from."""
    dataset = model_dataset(folder, manifest, info, where)
    loader = DataLoader(dataset, batch_size=params.batch_size, pin_memory=device.type == "cuda")
    scores = score_model(model, info, loader, device, params.tta)
    return eval_metrics(manifest, scores, info, params), scores


def write_predictions(
    manifest: pd.DataFrame, scores: Scores, info: ModelInfo, params: ScoringParams, predictions: Path, curves: Path
) -> None:
    """The per-image predictions table to `predictions` and the curves' data to the folder `curves`."""
    probabilities = np.exp(scores.log_probabilities)
    with atomic_file(predictions) as tmp:
        predictions_table(manifest, probabilities, list(info.classes)).to_csv(tmp, index=False)
    with atomic_dir(curves) as tmp:
        write_curves(scores.y_true, probabilities, info.classes, params.calibration_bins, tmp)


def eval_metrics(manifest: pd.DataFrame, scores: Scores, info: ModelInfo, params: ScoringParams) -> EvalReport:
    """eval.json: `test` (evaluation_report, with the loss, the TTA and, when the model has an
    unknown threshold, `unknown_rate`), `model`, and for an ensemble `cv`."""
    probabilities = np.exp(scores.log_probabilities)
    described, unknown_rate = scores.model, None
    if info.unknown_threshold is not None:  # test images are all of known classes: the share called unknown wrongly
        unknown_rate = float((unknown_scores(probabilities) > info.unknown_threshold).mean())
        described = described.model_copy(update={"unknown_threshold": info.unknown_threshold})
    test = evaluation_report(
        manifest, scores.y_true, probabilities, info.classes, params, loss=scores.loss, unknown_rate=unknown_rate
    )
    cv = None
    if scores.folds_logs is not None:
        cv = cross_validation(scores.folds_logs, scores.y_true, info, params.calibration_bins)
    return EvalReport(test=test, model=described, cv=cv)


def evaluation_report(
    manifest: pd.DataFrame,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    classes: tuple[str, ...],
    params: ScoringParams,
    *,
    loss: float,
    unknown_rate: float | None = None,
) -> TestReport:
    """The test metrics: balanced accuracy and its interval first, then the classification
    report, then the subgroups (by age band, sex and site), the loss, the TTA and the unknown rate."""
    y_pred, lesions = probabilities.argmax(axis=1), lesion_groups(manifest).to_numpy()
    resampling = {"resamples": params.bootstrap_resamples, "seed": params.seed}
    low, high = bootstrap_interval(y_true, y_pred, lesions, len(classes), **resampling)
    figures = classification_report(y_true, probabilities, classes, params.calibration_bins)
    subgroups = subgroup_report(
        manifest,
        y_true,
        y_pred,
        lesions,
        classes,
        overall=figures["balanced_accuracy"],
        min_images=params.subgroup_min_images,
        **resampling,
    )
    return TestReport(
        **figures,
        balanced_accuracy_ci95_low=low,
        balanced_accuracy_ci95_high=high,
        subgroups=subgroups,
        loss=loss,
        tta=params.tta,
        unknown_rate=unknown_rate,
    )


def predictions_table(manifest: pd.DataFrame, probabilities: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """image, lesion (its lesion id, or the image's own when it has none: what the bootstrap
    resamples), label, predicted, then one probability column per class."""
    table = manifest[["image"]].reset_index(drop=True)
    table["lesion"] = lesion_groups(manifest).to_numpy()
    table["label"] = manifest["label"].to_numpy()
    table["predicted"] = np.asarray(classes)[probabilities.argmax(axis=1)]
    for k, name in enumerate(classes):
        table[f"p_{name}"] = probabilities[:, k].round(6)
    return table


def write_curves(
    y_true: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...], bins: int, folder: Path
) -> None:
    """One CSV per class and curve (roc_MEL.csv: fpr, tpr; pr_MEL.csv: recall, precision) and
    reliability.csv (confidence, accuracy, count per bin), for DVC's linear plots."""
    for name, curve in one_vs_rest_curves(y_true, probabilities, classes).items():
        roc = pd.DataFrame({"fpr": curve["fpr"], "tpr": curve["tpr"]})
        roc.round(6).to_csv(folder / f"roc_{name}.csv", index=False)
        pr = pd.DataFrame({"recall": curve["recall"], "precision": curve["precision"]})
        pr.round(6).to_csv(folder / f"pr_{name}.csv", index=False)
    calibration = pd.DataFrame(
        reliability(y_true, probabilities, bins), columns=["bin", "confidence", "accuracy", "count"]
    )
    calibration.round(6).to_csv(folder / "reliability.csv", index=False)
