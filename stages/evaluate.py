"""Stage evaluate: the only stage that reads the test split.

Writes the metrics to --metrics; one row per test image with its true class, predicted class
and class probabilities to --predictions, which DVC draws as the confusion matrix; and
one-vs-rest ROC and precision-recall curves and the reliability diagram's data to --curves.
Probabilities use the model file's temperature (1 when it has none) and evaluate.tta. With the
model file's unknown threshold, `test.unknown_rate` is the share of test images (all of known
classes) that the unknown score would call unknown.
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
from skinlesion.evaluation.report import EvaluateRun, evaluation_report, predictions_table, write_curves
from skinlesion.model.checkpoint import load_checkpoint, model_dataset, uses_metadata
from skinlesion.model.device import memory_format, select_device
from skinlesion.model.inference import predict, unknown_scores

log = logging.getLogger(__name__)


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
    dataset = model_dataset(args.prepared / "test.npy", manifest, info)
    loader = DataLoader(dataset, batch_size=params.evaluate.batch_size, pin_memory=device.type == "cuda")
    temperature, tta = info.get("temperature", 1.0), params.evaluate.tta
    log_probabilities, y_true, loss = predict(model, loader, device, tta, temperature)
    probabilities = np.exp(log_probabilities)

    classes = tuple(info["classes"])
    report = {**evaluation_report(manifest, y_true, probabilities, classes, params.evaluate), "loss": loss, "tta": tta}
    model_info = {
        "epoch": info["epoch"],
        "val_balanced_accuracy": info["val_balanced_accuracy"],
        "temperature": temperature,
        "metadata": uses_metadata(info),
    }
    if "unknown_threshold" in info:  # test images are all of known classes: the share called unknown wrongly
        report["unknown_rate"] = float((unknown_scores(probabilities) > info["unknown_threshold"]).mean())
        model_info["unknown_threshold"] = info["unknown_threshold"]
    write_json(args.metrics, {"test": report, "model": model_info})
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
