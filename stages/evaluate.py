"""Stage evaluate: the model scored on the test split (skinlesion.evaluation.report).

Writes the metrics to --metrics; one row per test image with its true class, predicted class
and class probabilities to --predictions, which DVC draws as the confusion matrix; and
one-vs-rest ROC and precision-recall curves and the reliability diagram's data to --curves.
Of the stages, only evaluate and gradcam (which explains evaluate's predictions) read the
test split.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from skinlesion.atomic import atomic_dir, atomic_file, write_json
from skinlesion.classes import CLASSES
from skinlesion.config import load_params
from skinlesion.data.arrays import read_manifest
from skinlesion.entry import run_stage
from skinlesion.evaluation.report import EvaluateRun, eval_metrics, predictions_table, score_model, write_curves
from skinlesion.model.checkpoint import load_for_inference, model_dataset
from skinlesion.model.device import select_device

log = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--prepared", type=Path, required=True, help="prepare-split output folder (test is read)")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON file for the test metrics")
    parser.add_argument("--predictions", type=Path, required=True, help="CSV of per-image predictions")
    parser.add_argument("--curves", type=Path, required=True, help="folder for ROC, precision-recall, reliability")
    args = parser.parse_args()
    params = load_params(EvaluateRun)

    device = select_device(params.training.device)
    model, info = load_for_inference(args.model, device, CLASSES)
    manifest = read_manifest(args.prepared / "test.csv")
    dataset = model_dataset(args.prepared, manifest, info, str(args.prepared / "test.csv"))
    loader = DataLoader(dataset, batch_size=params.evaluate.batch_size, pin_memory=device.type == "cuda")
    scores = score_model(model, info, loader, device, params.evaluate.tta)
    metrics = eval_metrics(manifest, scores, info, params.evaluate)
    write_json(args.metrics, metrics)
    probabilities, classes = np.exp(scores.log_probabilities), info.classes
    with atomic_file(args.predictions) as tmp:
        predictions_table(manifest, probabilities, classes).to_csv(tmp, index=False)
    with atomic_dir(args.curves) as tmp:
        write_curves(scores.y_true, probabilities, classes, params.evaluate.calibration_bins, tmp)
    test = metrics["test"]
    log.info(
        "test: balanced accuracy %.4f, accuracy %.4f on %d images",
        test["balanced_accuracy"],
        test["accuracy"],
        len(scores.y_true),
    )


if __name__ == "__main__":
    run_stage(main)
