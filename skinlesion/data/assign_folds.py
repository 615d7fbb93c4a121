"""The params section `cv` and the dealing of train+val into folds, which only the
assign-folds stage reads (skinlesion.data.folds says what the folds are)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from skinlesion.config import Section, View
from skinlesion.data.folds import FOLD, NO_FOLD
from skinlesion.data.split import deal_groups, lesion_groups
from skinlesion.errors import DataError


class CvParams(Section):
    folds: tuple[int, ...] = Field(
        description="the folds, [0, 1, ..., K-1]: [0] is the single train/val split; [0, 1, 2, 3, 4] is 5-fold "
        "cross-validation over train+val, grouped by lesion (dvc.yaml runs one train stage per fold)"
    )
    seed: int = Field(description="which lesions go to which fold (with more than one fold)")

    @field_validator("folds", mode="before")
    @classmethod
    def _numbered_from_zero(cls, value: Any) -> Any:
        listed = list(value) if isinstance(value, list | tuple) else value
        if not isinstance(listed, list) or not listed or listed != list(range(len(listed))):
            raise ValueError(
                f"list the folds from 0: [0] for the single train/val split, [0, 1, 2, 3, 4] for 5-fold "
                f"cross-validation (dvc exp run -S 'cv.folds=[0,1,2,3,4]'); got {listed!r}"
            )
        return value


class CvRun(View):
    """The params assign-folds reads."""

    cv: CvParams


def assign_folds(pool: pd.DataFrame, folds: int, seed: int, where: str) -> pd.Series:
    """The fold that validates on each row of `pool` (prepare-split's train rows, then its val
    rows: columns image, label, lesion_id, split), aligned with its index. `where` names the
    files in errors.

    One fold: val rows are fold 0, train rows NO_FOLD. More: every lesion of train+val dealt
    into one of `folds` folds, each fold getting a lesion of every class; a class with fewer
    lesions than folds is a DataError naming it.
    """
    if folds == 1:
        return pd.Series(np.where(pool["split"] == "val", 0, NO_FOLD), index=pool.index)
    groups = lesion_groups(pool)
    lesions = groups.groupby(pool["label"]).nunique()
    short = lesions[lesions < folds]
    if len(short):
        label = min(short.index, key=lambda name: (short[name], name))
        raise DataError(
            f"params: cv.folds: {folds} folds, but class {label} has only {short[label]} lesion(s) in train+val "
            f"({where}): every fold must validate on every class; use at most {lesions.min()} folds"
        )
    return deal_groups(pd.DataFrame({"label": pool["label"], "group": groups}), np.full(folds, 1.0 / folds), seed)


def fold_table(train: pd.DataFrame, val: pd.DataFrame, folds: int, seed: int, where: str) -> pd.DataFrame:
    """The fold table: the manifests `train` and `val` pooled, with each row's fold."""
    pool = pd.concat([train, val], ignore_index=True)
    return pool.assign(**{FOLD: assign_folds(pool, folds, seed, where)})
