"""Stage assign-folds: deal prepare-split's train and val lesions into the cross-validation folds
of `cv.folds` (skinlesion.data.folds); with one fold, val validates and train trains, as published.

Writes the fold table: prepare-split's train rows, then its val rows, each with the fold that
validates on it. The test split is not read.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from skinlesion.atomic import atomic_file
from skinlesion.classes import read_classes
from skinlesion.config import load_params
from skinlesion.data.arrays import class_counts, read_manifest, write_manifest
from skinlesion.data.assign_folds import CvRun, fold_table
from skinlesion.data.folds import FOLD
from skinlesion.entry import run_stage

log = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", type=Path, required=True, help="prepare-split output folder")
    parser.add_argument("--out", type=Path, required=True, help="CSV for the fold table")
    args = parser.parse_args()
    params = load_params(CvRun).cv

    classes = read_classes(args.prepared)
    train, val = (read_manifest(args.prepared / f"{split}.csv", classes) for split in ("train", "val"))
    where = f"{args.prepared / 'train.csv'} and {args.prepared / 'val.csv'}"
    table = fold_table(train, val, len(params.folds), params.seed, where)
    with atomic_file(args.out) as tmp:
        write_manifest(table, tmp)
    for fold in params.folds:
        log.info("fold %d validates on %s", fold, class_counts(table.loc[table[FOLD] == fold, "label"], classes))


if __name__ == "__main__":
    run_stage(main)
