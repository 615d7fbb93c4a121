"""What the ensemble stage reads of the folds before it loads any model (no torch here: with one
fold, the stage only copies fold 0's model file): its params, each fold's model file and every
fold's validation curves."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from skinlesion.config import View
from skinlesion.errors import DataError
from skinlesion.model.names import TrainingDevice

# the validation curves that fold_curves gathers from each fold's DVCLive folder
CURVES = ("balanced_accuracy", "loss", "accuracy")


class ValidationPredictions(TrainingDevice):
    """The keys of `training` that say how the fold models predict their validation images."""

    batch_size: int


class EnsembleRun(View):
    """The params the ensemble stage reads (its folds are those of the fold table)."""

    training: ValidationPredictions


def fold_model_files(folder: Path, folds: list[int]) -> list[Path]:
    """The model file of each fold (`folder`/k/model.pt); a DataError names those missing."""
    files = [folder / str(fold) / "model.pt" for fold in folds]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise DataError(f"fold models not found: {missing} (run dvc repro: the train stages write them)")
    return files


def fold_curves(live: Path, folds: list[int]) -> pd.DataFrame:
    """Every fold's validation curves in one table (step, fold, then CURVES), for DVC to draw
    one line per fold (.dvc/plots/folds.json); `live`/k is fold k's DVCLive folder."""
    tables = []
    for fold in folds:
        folder = live / str(fold) / "plots" / "metrics" / "val"
        curves = [pd.read_csv(folder / f"{name}.tsv", sep="\t")[["step", name]].set_index("step") for name in CURVES]
        tables.append(pd.concat(curves, axis=1).reset_index().assign(fold=fold))
    return pd.concat(tables, ignore_index=True)[["step", "fold", *CURVES]]
