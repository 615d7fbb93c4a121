"""Stage kmeans-undersample: cut every training class of a fold above its target down to the
target with K-Means (skinlesion.resampling.kmeans). Only the fold's training rows are read."""

from __future__ import annotations

import argparse
from pathlib import Path

from skinlesion.atomic import atomic_file, write_json
from skinlesion.classes import read_classes
from skinlesion.config import load_params
from skinlesion.data.arrays import ManifestImages, class_counts, read_manifest, write_manifest
from skinlesion.data.folds import fold_manifests
from skinlesion.entry import run_stage
from skinlesion.resampling.kmeans import UndersampleRun, plot_clusters, undersample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--prepared", type=Path, required=True, help="prepare-split output folder (its arrays and classes)"
    )
    parser.add_argument("--folds", type=Path, required=True, help="assign-folds' fold table (CSV)")
    parser.add_argument("--fold", type=int, required=True, help="the fold whose training rows are undersampled")
    parser.add_argument("--out", type=Path, required=True, help="kept training manifest (CSV)")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON file for counts before and after")
    parser.add_argument("--plot", type=Path, required=True, help="PNG of the clusters")
    args = parser.parse_args()
    params = load_params(UndersampleRun).sampling

    classes = read_classes(args.prepared)
    manifest, _ = fold_manifests(read_manifest(args.folds, classes), args.fold, str(args.folds))
    kept, info = undersample(manifest, ManifestImages(args.prepared, manifest), params, classes)
    plot_clusters(info, args.plot)
    counts = {"before": class_counts(manifest["label"], classes), "after": class_counts(kept["label"], classes)}
    write_json(args.metrics, counts)
    with atomic_file(args.out) as tmp:
        write_manifest(kept, tmp)


if __name__ == "__main__":
    run_stage(main)
