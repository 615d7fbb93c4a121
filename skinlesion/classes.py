"""The diagnostic classes: ISIC 2019's eight by default, or the columns of a data root's own
ground-truth CSV.

prepare-split takes the class list from the ground-truth CSV's columns (their order is the
order of the model's outputs) and writes it beside its manifests as `classes.json`; every
later stage of the training side reads it from there, and a trained model carries it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from skinlesion.errors import DataError
from skinlesion.files import read_json

if TYPE_CHECKING:
    import pandas as pd

# ISIC 2019's training classes, in the column order of its ground-truth CSV: the default, and
# the only classes the official submission format knows
CLASSES: tuple[str, ...] = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
CLASSES_FILE = "classes.json"


def write_classes(folder: str | Path, classes: tuple[str, ...]) -> None:
    """Write the class list into `folder`, beside a split's manifests (a folder that atomic_files
    or atomic_dir moves into place whole: the file is written there directly)."""
    (Path(folder) / CLASSES_FILE).write_text(json.dumps(list(classes), indent=2) + "\n", encoding="utf-8")


def read_classes(folder: str | Path) -> tuple[str, ...]:
    """The class list prepare-split wrote into `folder`."""
    path = Path(folder) / CLASSES_FILE
    classes = read_json(path)
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) and c for c in classes):
        raise DataError(f"{path}: expected a list of at least two class names, found {classes!r}")
    return tuple(classes)


def check_labels(labels: pd.Series, classes: tuple[str, ...], where: str) -> None:
    """A DataError naming `where` and the first label of `labels` that is not one of `classes`."""
    unknown = labels[~labels.isin(classes)]
    if len(unknown):
        raise DataError(f"{where}: label {unknown.iloc[0]!r} is not one of the classes {list(classes)}")
