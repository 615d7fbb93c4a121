"""Unknown lesions, measured without any unknown training image: leave one class out.

For each class named by --held-out, its images are taken out of the training and validation
splits (prepare-split's lesion-grouped split of --data-root, decoded once); the recipe trains
on the rest at the real-data benchmark's budget (`--budget`, as benchmarks/real_data.py),
K-Means undersampling and augmentation oversampling included, and the validation split, now
without the class, fixes the unknown threshold as training always does. On the whole test
split the unknown score (one minus the top class probability) should rank the held-out class
(unknown) above the classes the model knows: reported as its AUROC (0.5: chance, the baseline
of the same run), and the shares of held-out and of known test images that the threshold
calls unknown.

    python -m benchmarks.unknown --data-root ../shared/data/isic2019-dev \\
        --held-out MEL BCC BKL VASC --out benchmarks/results/cpu/unknown.json

Runs in-process through the library (no dvc), in a temporary folder.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from benchmarks import publish
from benchmarks.real_data import BUDGETS
from benchmarks.timing import timed
from skinlesion.classes import CLASSES
from skinlesion.config import parse_params
from skinlesion.cores import available_cores
from skinlesion.data.arrays import ManifestImages, write_manifest
from skinlesion.data.folds import FoldData
from skinlesion.data.isic import ImageSource, read_labels
from skinlesion.data.prepare import PrepareRun, assign_rows, write_split_arrays
from skinlesion.data.split import split_by_lesion
from skinlesion.model.checkpoint import load_checkpoint, model_dataset
from skinlesion.model.device import select_device
from skinlesion.model.inference import predict
from skinlesion.model.unknown import KEEP_KNOWN, unknown_scores
from skinlesion.resampling.kmeans import UndersampleRun, undersample
from skinlesion.resampling.oversample import balanced_manifest, oversample_plan
from skinlesion.training.live import MemoryLive
from skinlesion.training.loop import fit
from skinlesion.training.params import TrainRun

REPO = Path(__file__).resolve().parents[1]


def budget_params(budget: dict[str, str]) -> dict:
    """params.yaml with the budget's dotted `key: value` overrides applied (values as YAML)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in budget.items():
        section, name = key.split(".")
        params[section][name] = yaml.safe_load(value)
    return params


def held_out_run(manifest, prepared: Path, held: str, params: dict, folder: Path) -> dict:
    """Train without class `held` (in `folder`) and score the unknown score on the test split."""
    folder.mkdir()
    train_run, sampling = parse_params(TrainRun, params), parse_params(UndersampleRun, params).sampling
    known = manifest[manifest["label"] != held]
    train, val = (known[known["split"] == split].reset_index(drop=True) for split in ("train", "val"))
    kept, _ = undersample(train, ManifestImages(prepared, train), sampling, CLASSES)
    targets = {name: count for name, count in sampling.targets(CLASSES).items() if name != held}
    write_manifest(
        balanced_manifest(kept, oversample_plan(kept, targets, train_run.augmentation.seed)), folder / "balanced.csv"
    )

    def train_without_held() -> dict:
        data = FoldData(prepared, folder / "balanced.csv", val, "the val split")
        return fit(train_run, data, folder / "model.pt", MemoryLive())

    best, seconds = timed(train_without_held)

    model, info = load_checkpoint(folder / "model.pt")
    test = manifest[manifest["split"] == "test"].reset_index(drop=True)
    loader = DataLoader(model_dataset(prepared, test, info, "test split"), batch_size=64)
    log_probabilities, _, _ = predict(model, loader, select_device("cpu"))
    scores = unknown_scores(np.exp(log_probabilities))
    unknown = (test["label"] == held).to_numpy()
    called = scores > info.unknown_threshold
    return {
        "auroc": round(float(roc_auc_score(unknown, scores)), 4),
        "held_out_test_images": int(unknown.sum()),
        "called_unknown_held_out": round(float(called[unknown].mean()), 4),
        "called_unknown_known": round(float(called[~unknown].mean()), 4),
        "unknown_threshold": round(info.unknown_threshold, 4),
        "val_balanced_accuracy": round(best["val_balanced_accuracy"], 4),
        "train_seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="ISIC-layout folder")
    parser.add_argument("--held-out", nargs="+", choices=CLASSES, required=True, help="classes, one run each")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--out", type=Path, help="JSON report (rewritten after each class)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = budget_params(BUDGETS[args.budget])
    prepare = parse_params(PrepareRun, params).prepare
    report = {
        "data_root": str(args.data_root.resolve()),
        "budget": args.budget,
        "keep_known": KEEP_KNOWN,
        "score": "1 - top class probability (after the model's temperature, if any)",
        "chance_auroc": 0.5,
        "machine": f"{platform.machine()}, {available_cores()} cores, Python {platform.python_version()}",
        "held_out": {},
    }
    with tempfile.TemporaryDirectory(prefix="unknown-") as tmp:
        prepared = Path(tmp) / "prepared"
        prepared.mkdir()
        labels = read_labels(args.data_root)
        split = split_by_lesion(
            labels, val_fraction=prepare.val_fraction, test_fraction=prepare.test_fraction, seed=prepare.seed
        )
        manifest = assign_rows(labels, split)
        write_split_arrays(manifest, ImageSource(args.data_root), prepare, available_cores(), prepared)
        for held in args.held_out:
            row = held_out_run(manifest, prepared, held, params, Path(tmp) / held)
            report["held_out"][held] = {**row, "auroc_over_chance": round(row["auroc"] / 0.5, 3)}
            print(f"{held}: {report['held_out'][held]}", file=sys.stderr, flush=True)
            publish(report, args.out)


if __name__ == "__main__":
    main()
