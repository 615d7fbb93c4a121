"""Cross-validation folds over train+val, stratified by class and grouped by lesion: what a
fold's stages read (the params and the dealing, which only assign-folds reads, are in
skinlesion.data.assign_folds).

`cv.folds` lists the folds, [0, 1, ..., K-1]: dvc.yaml runs kmeans-undersample,
augment-oversample and train once per entry (DVC's `foreach` needs the list; it cannot count
to K). K = 1 is the published single split: fold 0 validates on prepare-split's val split and
trains on its train split, exactly as without cross-validation. With K > 1, train and val are
pooled and their lesions dealt into K folds (deal_groups, equal shares); fold k validates on
its own lesions and trains on the other K-1 folds. The test split is never part of a fold.

The fold table (assign-folds' output) is the pooled manifest, train rows then val rows, with
a `fold` column: the fold that validates on the row, or -1 (K = 1's train rows) for none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from skinlesion.classes import CLASSES, read_classes
from skinlesion.data.arrays import read_manifest
from skinlesion.errors import DataError

FOLD = "fold"
NO_FOLD = -1  # a row that no fold validates on (the train split when K = 1)


def fold_numbers(table: pd.DataFrame) -> list[int]:
    """The folds of the fold table `table`, in order."""
    return sorted(int(fold) for fold in set(table[FOLD]) - {NO_FOLD})


def fold_manifests(table: pd.DataFrame, fold: int, where: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fold `fold`'s (training, validation) manifests from the fold table `table`."""
    if FOLD not in table.columns:
        raise DataError(f"{where}: not a fold table (no {FOLD!r} column)")
    folds = table[FOLD].astype(int)
    if not (folds == fold).any():
        raise DataError(f"{where}: no rows of fold {fold} (its folds: {sorted(set(folds) - {NO_FOLD})})")
    train, val = table[folds != fold], table[folds == fold]
    return train.drop(columns=FOLD).reset_index(drop=True), val.drop(columns=FOLD).reset_index(drop=True)


@dataclass(frozen=True, eq=False)
class FoldData:
    """What training on one fold reads: prepare-split's folder (its arrays), augment-oversample's
    balanced training manifest, and the fold's validation manifest (named by `where` in errors)."""

    prepared: Path
    balanced: Path
    validation: pd.DataFrame
    where: str
    classes: tuple[str, ...] = CLASSES  # the data's (prepare-split's classes.json)

    @classmethod
    def of_fold(cls, prepared: Path, balanced: Path, folds: Path, fold: int) -> FoldData:
        """Fold `fold` of the fold table at `folds` (assign-folds' output)."""
        where, classes = f"{folds}, fold {fold}", read_classes(prepared)
        validation = fold_manifests(read_manifest(folds, classes), fold, str(folds))[1]
        return cls(prepared, balanced, validation, where, classes)
