"""Stage augment-oversample: fill every training class of a fold below its target with augmented
copies of its own training images (skinlesion.resampling.oversample).

Writes the balanced manifest (real images, then copies naming their sources; the train stage
draws each copy afresh every epoch), the counts, and a grid of example copies.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from skinlesion.atomic import atomic_file, write_json
from skinlesion.classes import read_classes
from skinlesion.config import load_params
from skinlesion.data.arrays import class_counts, read_manifest, write_manifest
from skinlesion.entry import run_stage
from skinlesion.resampling.oversample import (
    OversampleRun,
    balanced_manifest,
    oversample_plan,
    plot_grid,
)

log = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--prepared", type=Path, required=True, help="prepare-split output folder (its arrays and classes)"
    )
    parser.add_argument("--kept", type=Path, required=True, help="kmeans-undersample manifest")
    parser.add_argument("--out", type=Path, required=True, help="CSV for the balanced manifest")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON file for the counts")
    parser.add_argument("--plot", type=Path, required=True, help="PNG grid of originals and copies")
    args = parser.parse_args()
    params = load_params(OversampleRun)

    classes = read_classes(args.prepared)
    kept = read_manifest(args.kept, classes)
    targets = params.sampling.targets(classes) if params.sampling.oversample else {}
    balanced = balanced_manifest(kept, oversample_plan(kept, targets, params.augmentation.seed))
    plot_grid(balanced, args.prepared, params.augmentation, args.plot)
    with atomic_file(args.out) as tmp:
        write_manifest(balanced, tmp)
    counts = {"before": class_counts(kept["label"], classes), "after": class_counts(balanced["label"], classes)}
    write_json(args.metrics, {**counts, "augmented": int(balanced["augmented"].sum())})
    log.info("balanced training set: %s", counts["after"])


if __name__ == "__main__":
    run_stage(main)
