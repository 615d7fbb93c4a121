"""Stage evaluate: the only stage that reads the test split.

Writes the metrics to --metrics; one row per test image with its true class, predicted class
and class probabilities to --predictions, which DVC draws as the confusion matrix; and
one-vs-rest ROC and precision-recall curves and the reliability diagram's data to --curves.
Probabilities use the model file's temperature (1 when it has none) and evaluate.tta. With the
model file's unknown threshold, `test.unknown_rate` is the share of test images (all of known
classes) that the unknown score would call unknown. For the fold models' ensemble (cv.folds
with more than one fold) `test` is the ensemble's, and `cv` holds each fold model's test
figures, their mean and standard deviation, and the out-of-fold estimate on train+val.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from skinlesion.atomic import atomic_dir, atomic_file, write_json
from skinlesion.classes import CLASSES
from skinlesion.config import load_params
from skinlesion.data.arrays import read_manifest
from skinlesion.evaluation.metrics import classification_report
from skinlesion.evaluation.report import EvaluateRun, evaluation_report, predictions_table, write_curves
from skinlesion.model.checkpoint import load_checkpoint, model_dataset, uses_metadata
from skinlesion.model.device import memory_format, select_device
from skinlesion.model.ensemble import fold_predictions
from skinlesion.model.inference import mean_probability, predict, unknown_scores

log = logging.getLogger(__name__)


# the test figures reported for each fold model, and their mean and standard deviation
FOLD_FIGURES = ("balanced_accuracy", "accuracy", "macro_f1", "macro_auc", "ece")


def cross_validation(folds_logs: np.ndarray, y_true: np.ndarray, info: dict, bins: int) -> dict:
    """Each fold model's test figures (from fold_predictions), their mean and sample standard
    deviation over the folds, and the out-of-fold estimate that the ensemble stage measured on
    train+val (no test image in it)."""
    folds = {}
    for fold, (logs, member_info) in enumerate(zip(folds_logs, info["members"])):
        report = classification_report(y_true, np.exp(logs), tuple(info["classes"]), bins)
        folds[str(fold)] = {
            "test": {name: report[name] for name in FOLD_FIGURES},
            "epoch": member_info["epoch"],
            "val_balanced_accuracy": member_info["val_balanced_accuracy"],
        }
    values = {
        name: [fold["test"][name] for fold in folds.values() if fold["test"][name] is not None] for name in FOLD_FIGURES
    }
    return {
        "folds": folds,
        "test_mean": {name: float(np.mean(found)) if found else None for name, found in values.items()},
        "test_std": {name: float(np.std(found, ddof=1)) if len(found) > 1 else None for name, found in values.items()},
        "out_of_fold": info["out_of_fold"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--prepared", type=Path, required=True, help="prepare-split output folder (test is read)")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON file for the test metrics")
    parser.add_argument("--predictions", type=Path, required=True, help="CSV of per-image predictions")
    parser.add_argument("--curves", type=Path, required=True, help="folder for ROC, precision-recall, reliability")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params(EvaluateRun)

    device = select_device(params.training.device)
    model, info = load_checkpoint(args.model, CLASSES)
    model = model.to(device, memory_format=memory_format(device))
    manifest = read_manifest(args.prepared / "test.csv")
    dataset = model_dataset(args.prepared, manifest, info, str(args.prepared / "test.csv"))
    loader = DataLoader(dataset, batch_size=params.evaluate.batch_size, pin_memory=device.type == "cuda")
    temperature, tta = info.get("temperature", 1.0), params.evaluate.tta
    if "members" in info:  # the fold models' ensemble: its figures are the headline, each fold's beside them
        folds_logs, y_true = fold_predictions(model, loader, device, tta)  # each fold model runs once
        log_probabilities = mean_probability(torch.from_numpy(folds_logs)).numpy()
        loss = float(-log_probabilities[np.arange(len(y_true)), y_true].mean())
        model_info = {"folds": len(info["members"]), "metadata": uses_metadata(info)}
        metrics = {"cv": cross_validation(folds_logs, y_true, info, params.evaluate.calibration_bins)}
    else:
        log_probabilities, y_true, loss = predict(model, loader, device, tta, temperature)
        model_info = {
            "epoch": info["epoch"],
            "val_balanced_accuracy": info["val_balanced_accuracy"],
            "temperature": temperature,
            "metadata": uses_metadata(info),
        }
        metrics = {}
    probabilities = np.exp(log_probabilities)
    classes = tuple(info["classes"])
    report = {**evaluation_report(manifest, y_true, probabilities, classes, params.evaluate), "loss": loss, "tta": tta}
    if "unknown_threshold" in info:  # test images are all of known classes: the share called unknown wrongly
        report["unknown_rate"] = float((unknown_scores(probabilities) > info["unknown_threshold"]).mean())
        model_info["unknown_threshold"] = info["unknown_threshold"]
    write_json(args.metrics, {"test": report, "model": model_info, **metrics})
    with atomic_file(args.predictions) as tmp:
        predictions_table(manifest, probabilities, classes).to_csv(tmp, index=False)
    with atomic_dir(args.curves) as tmp:
        write_curves(y_true, probabilities, classes, params.evaluate.calibration_bins, tmp)
    log.info(
        "test: balanced accuracy %.4f, accuracy %.4f on %d images",
        report["balanced_accuracy"],
        report["accuracy"],
        len(y_true),
    )


if __name__ == "__main__":
    main()
