"""Stage kmeans-undersample: cut every training class above its target down to the target
with K-Means (skinlesion.resampling.kmeans). Only the training split is read."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from skinlesion.atomic import atomic_file, write_json
from skinlesion.config import load_params
from skinlesion.data.arrays import class_counts, open_images, read_manifest, write_manifest
from skinlesion.resampling.kmeans import UndersampleRun, plot_clusters, undersample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", type=Path, required=True, help="prepare-split output folder")
    parser.add_argument("--out", type=Path, required=True, help="kept training manifest (CSV)")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON file for counts before and after")
    parser.add_argument("--plot", type=Path, required=True, help="PNG of the clusters")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params(UndersampleRun).sampling

    manifest = read_manifest(args.prepared / "train.csv")
    kept, info = undersample(manifest, open_images(args.prepared / "train.npy"), params)
    plot_clusters(info, args.plot)
    counts = {"before": class_counts(manifest["label"]), "after": class_counts(kept["label"])}
    write_json(args.metrics, counts)
    with atomic_file(args.out) as tmp:
        write_manifest(kept, tmp)


if __name__ == "__main__":
    main()
