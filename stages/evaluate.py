"""Stage evaluate: the only stage that reads the test split.

Writes the metrics (balanced accuracy first, with a 95% bootstrap interval over lesions) to
--metrics; one row per test image with its true class, predicted class and class
probabilities to --predictions, which DVC draws as the confusion matrix; and one-vs-rest ROC
and precision-recall curves and the reliability diagram's data to --curves.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader

from stages.dataset import ImageArrayDataset
from stages.files import atomic_dir, atomic_file, write_json
from stages.metrics import bootstrap_interval, classification_report, one_vs_rest_curves, reliability
from stages.model import load_checkpoint, memory_format, predict, select_device
from stages.params import CLASSES, load_params
from stages.store import read_manifest
from stages.transforms import eval_transform

log = logging.getLogger(__name__)


def predictions_table(manifest: pd.DataFrame, probabilities: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """image, label, predicted, then one probability column per class."""
    table = manifest[["image", "label"]].reset_index(drop=True)
    table["predicted"] = np.asarray(classes)[probabilities.argmax(axis=1)]
    for k, name in enumerate(classes):
        table[f"p_{name}"] = probabilities[:, k].round(6)
    return table


def write_curves(y_true: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...], bins: int, folder: Path) -> None:
    """One CSV per class and curve (roc_MEL.csv: fpr, tpr; pr_MEL.csv: recall, precision) and
    reliability.csv (confidence, accuracy, count per bin), for DVC's linear plots."""
    for name, curve in one_vs_rest_curves(y_true, probabilities, classes).items():
        pd.DataFrame({"fpr": curve["fpr"], "tpr": curve["tpr"]}).round(6).to_csv(folder / f"roc_{name}.csv", index=False)
        pd.DataFrame({"recall": curve["recall"], "precision": curve["precision"]}).round(6).to_csv(folder / f"pr_{name}.csv", index=False)
    pd.DataFrame(reliability(y_true, probabilities, bins), columns=["bin", "confidence", "accuracy", "count"]).round(6).to_csv(folder / "reliability.csv", index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--prepared", type=Path, required=True, help="prepare-split output folder (test is read)")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON file for the test metrics")
    parser.add_argument("--predictions", type=Path, required=True, help="CSV of per-image predictions")
    parser.add_argument("--curves", type=Path, required=True, help="folder for ROC, precision-recall and reliability data")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params()

    device = select_device(params.training.device)
    model, info = load_checkpoint(args.model, CLASSES)
    model = model.to(device, memory_format=memory_format(device))
    manifest = read_manifest(args.prepared / "test.csv")
    dataset = ImageArrayDataset(args.prepared / "test.npy", manifest, eval_transform(mean=tuple(info["mean"]), std=tuple(info["std"])))
    loader = DataLoader(dataset, batch_size=params.evaluate.batch_size, pin_memory=device.type == "cuda")
    probabilities, y_true, loss = predict(model, loader, device)

    classes, settings = tuple(info["classes"]), params.evaluate
    report = classification_report(y_true, probabilities, classes, settings.calibration_bins)
    groups = manifest["lesion_id"].where(manifest["lesion_id"] != "", manifest["image"]).to_numpy()
    low, high = bootstrap_interval(y_true, probabilities.argmax(axis=1), groups, len(classes), resamples=settings.bootstrap_resamples, seed=settings.seed)
    report = {"balanced_accuracy": report.pop("balanced_accuracy"), "balanced_accuracy_ci95_low": low, "balanced_accuracy_ci95_high": high, **report, "loss": loss}
    write_json(args.metrics, {"test": report, "model": {"epoch": info["epoch"], "val_balanced_accuracy": info["val_balanced_accuracy"]}})
    args.predictions.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.predictions) as tmp:
        predictions_table(manifest, probabilities, classes).to_csv(tmp, index=False)
    with atomic_dir(args.curves) as tmp:
        write_curves(y_true, probabilities, classes, settings.calibration_bins, tmp)
    log.info("test: balanced accuracy %.4f, accuracy %.4f on %d images", report["balanced_accuracy"], report["accuracy"], len(y_true))


if __name__ == "__main__":
    main()
