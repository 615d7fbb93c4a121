"""Stage evaluate: the only stage that reads the test split.

Writes the metrics (balanced accuracy first) to --metrics and one row per test image with
its true class, predicted class and class probabilities to --predictions, which DVC also
draws as the confusion matrix.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader

from stages.dataset import ImageArrayDataset
from stages.files import atomic_file, write_json
from stages.metrics import classification_report
from stages.model import load_checkpoint, memory_format, predict, select_device
from stages.params import load_params
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--prepared", type=Path, required=True, help="prepare-split output folder (test is read)")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON file for the test metrics")
    parser.add_argument("--predictions", type=Path, required=True, help="CSV of per-image predictions")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params()

    device = select_device(params.training.device)
    model, info = load_checkpoint(args.model)
    model = model.to(device, memory_format=memory_format(device))
    manifest = read_manifest(args.prepared / "test.csv")
    dataset = ImageArrayDataset(args.prepared / "test.npy", manifest, eval_transform(mean=tuple(info["mean"]), std=tuple(info["std"])))
    loader = DataLoader(dataset, batch_size=params.evaluate.batch_size, pin_memory=device.type == "cuda")
    probabilities, y_true, loss = predict(model, loader, device)

    report = classification_report(y_true, probabilities, tuple(info["classes"]))
    write_json(args.metrics, {"test": {**report, "loss": loss}, "model": {"epoch": info["epoch"], "val_balanced_accuracy": info["val_balanced_accuracy"]}})
    args.predictions.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.predictions) as tmp:
        predictions_table(manifest, probabilities, info["classes"]).to_csv(tmp, index=False)
    log.info("test: balanced accuracy %.4f, accuracy %.4f on %d images", report["balanced_accuracy"], report["accuracy"], len(y_true))


if __name__ == "__main__":
    main()
