"""Stage prepare-split: validate the ISIC files, split by lesion, decode every image once.

Writes, under --out, `<split>.npy` (N, size, size, 3) uint8 and `<split>.csv` manifests for
train, val and test, plus `skipped.csv` (images skipped as missing or corrupt, when
`prepare.skip_bad_images` allows it) and `classes.json` (the ground truth's class columns);
and per-class counts per split to --metrics. DVC tracks each of these files as its own output,
not the folder (a folder output breaks later stages that depend on files inside it when it is
restored from the run cache: docs/real_data.md).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from skinlesion.atomic import atomic_files, write_json
from skinlesion.classes import write_classes
from skinlesion.config import load_params
from skinlesion.data.arrays import write_manifest
from skinlesion.data.isic import ImageSource, ground_truth_classes, read_labels
from skinlesion.data.prepare import (
    OUTPUT_FILES,
    PrepareRun,
    assign_rows,
    drop_skipped,
    split_counts,
    write_split_arrays,
)
from skinlesion.data.split import SPLITS, split_by_lesion
from skinlesion.entry import run_stage

log = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="folder with the ISIC 2019 CSVs and the images")
    parser.add_argument("--out", type=Path, required=True, help="folder for arrays and manifests")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON file for the split counts")
    args = parser.parse_args()
    params = load_params(PrepareRun).prepare

    labels, classes = read_labels(args.data_root), ground_truth_classes(args.data_root)
    split = split_by_lesion(
        labels, val_fraction=params.val_fraction, test_fraction=params.test_fraction, seed=params.seed
    )
    manifest = assign_rows(labels, split)
    with atomic_files(args.out, OUTPUT_FILES) as tmp:
        skipped = write_split_arrays(manifest, ImageSource(args.data_root), params, params.decoding_processes(), tmp)
        if len(skipped):
            log.warning("skipped %d images; see %s", len(skipped), args.out / "skipped.csv")
            manifest = drop_skipped(manifest, skipped, tmp)
        skipped.to_csv(tmp / "skipped.csv", index=False)
        write_classes(tmp, classes)
        for name in SPLITS:
            write_manifest(manifest[manifest["split"] == name], tmp / f"{name}.csv")
    counts = split_counts(manifest, classes)
    write_json(args.metrics, {**counts, "skipped": len(skipped)})
    log.info("split %d images: %s", len(manifest), {name: c["total"] for name, c in counts.items()})


if __name__ == "__main__":
    run_stage(main)
