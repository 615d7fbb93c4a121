"""Stage ensemble: the model that evaluate, gradcam and predict use, from the fold models.

With one fold it is fold 0's model file, byte for byte. With K folds it is their ensemble
(skinlesion.model.ensemble: probabilities averaged over the fold models), with an out-of-fold
estimate: each train+val image predicted by the one fold model that validated on it, never
trained on it. The ensemble's unknown threshold is chosen on those out-of-fold predictions,
so on validation data only, as each fold model's own threshold is. Every fold's validation
curves are gathered into one table, drawn one line per fold.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn
from torch.utils.data import DataLoader

from skinlesion.atomic import atomic_file
from skinlesion.classes import CLASSES
from skinlesion.config import View, load_params
from skinlesion.data.arrays import read_manifest
from skinlesion.data.folds import FOLD, NO_FOLD, fold_manifests
from skinlesion.errors import DataError
from skinlesion.evaluation.metrics import balanced_accuracy
from skinlesion.model.checkpoint import build_checkpoint, model_dataset, read_checkpoint, save_ensemble
from skinlesion.model.device import TrainingDevice, memory_format, select_device
from skinlesion.model.inference import KEEP_KNOWN, predict, unknown_scores, unknown_threshold

log = logging.getLogger(__name__)

# what every fold model must share for their probabilities to be averaged over one input
SHARED = ("arch", "classes", "image_size", "crop_border", "color_constancy", "mean", "std", "metadata")


class EnsembleRun(View):
    """The params ensemble reads (its folds are those of the fold table)."""

    training: TrainingDevice


def out_of_fold(members: list[tuple[nn.Module, dict]], table: pd.DataFrame, prepared: Path, where: str, device) -> dict:
    """Each fold model's predictions on its own validation rows (`members`: the (model, info)
    of folds 0, 1, ...): balanced accuracy and accuracy over all of them, and the unknown
    threshold that keeps KEEP_KNOWN of them known."""
    probabilities, labels = [], []
    for fold, (model, info) in enumerate(members):
        model = model.to(device, memory_format=memory_format(device))
        _, validation = fold_manifests(table, fold, where)
        dataset = model_dataset(prepared, validation, info, f"{where}, fold {fold}")
        logs, y_true, _ = predict(
            model, DataLoader(dataset, batch_size=64), device, "none", info.get("temperature", 1.0)
        )
        probabilities.append(np.exp(logs))
        labels.append(y_true)
    probabilities, y_true = np.concatenate(probabilities), np.concatenate(labels)
    y_pred = probabilities.argmax(axis=1)
    return {
        "images": len(y_true),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred, len(CLASSES)),
        "accuracy": float((y_pred == y_true).mean()),
        "unknown_threshold": unknown_threshold(unknown_scores(probabilities)),
    }


# the validation curves that fold_curves gathers from each fold's DVCLive folder
CURVES = ("balanced_accuracy", "loss", "accuracy")


def fold_curves(live: Path, folds: list[int]) -> pd.DataFrame:
    """Every fold's validation curves in one table (step, fold, then CURVES), for DVC to draw
    one line per fold (.dvc/plots/folds.json)."""
    tables = []
    for fold in folds:
        folder = live / str(fold) / "plots" / "metrics" / "val"
        curves = [pd.read_csv(folder / f"{name}.tsv", sep="\t")[["step", name]].set_index("step") for name in CURVES]
        tables.append(pd.concat(curves, axis=1).reset_index().assign(fold=fold))
    return pd.concat(tables, ignore_index=True)[["step", "fold", *CURVES]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fold-models", type=Path, required=True, help="folder of the fold models (K/model.pt)")
    parser.add_argument("--prepared", type=Path, required=True, help="prepare-split output folder (its arrays)")
    parser.add_argument("--folds", type=Path, required=True, help="assign-folds' fold table (CSV)")
    parser.add_argument("--live", type=Path, required=True, help="folder of the folds' DVCLive folders (K/)")
    parser.add_argument("--out", type=Path, required=True, help="the model file to write")
    parser.add_argument("--curves", type=Path, required=True, help="CSV of every fold's validation curves")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params(EnsembleRun)

    table = read_manifest(args.folds)
    folds = sorted(set(table[FOLD]) - {NO_FOLD})
    members = [args.fold_models / str(fold) / "model.pt" for fold in folds]
    missing = [str(path) for path in members if not path.is_file()]
    if missing:
        raise DataError(f"fold models not found: {missing} (run dvc repro: the train stages write them)")
    with atomic_file(args.curves) as tmp:
        fold_curves(args.live, folds).round(6).to_csv(tmp, index=False)
    if len(members) == 1:
        with atomic_file(args.out) as tmp:
            shutil.copyfile(members[0], tmp)
        log.info("one fold: %s is %s", args.out, members[0])
        return

    checkpoints = [read_checkpoint(path) for path in members]  # each file read once
    loaded = [build_checkpoint(checkpoint, path, CLASSES) for checkpoint, path in zip(checkpoints, members)]
    infos = [info for _, info in loaded]
    for key in SHARED:
        values = [info.get(key) for info in infos]
        if any(value != values[0] for value in values):
            raise DataError(f"the fold models differ in {key} ({dict(zip(map(str, members), values))}): retrain them")
    oof = out_of_fold(loaded, table, args.prepared, str(args.folds), select_device(params.training.device))
    shared = {key: infos[0][key] for key in SHARED if key in infos[0]}
    save_ensemble(args.out, checkpoints, **shared, unknown_threshold=oof.pop("unknown_threshold"), out_of_fold=oof)
    log.info(
        "ensemble of %d fold models; out of fold (%d train+val images): balanced accuracy %.4f; unknown threshold "
        "keeps %.0f%% known",
        len(members),
        oof["images"],
        oof["balanced_accuracy"],
        100 * KEEP_KNOWN,
    )


if __name__ == "__main__":
    main()
