"""Stage kmeans-undersample: cut every training class above its target down to the target.

Each such class is clustered with K-Means on image features; the target is shared out to
the clusters in proportion to their sizes and images are drawn within clusters, so the
kept images cover the class's sub-types as the full class did. Classes at or below their
target are kept whole. Only the training split is read.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from stages.files import atomic_file, write_json
from stages.params import SamplingParams, load_params
from stages.sampling import cluster, image_features, pick_within_clusters
from stages.store import class_counts, open_images, read_manifest, write_manifest

log = logging.getLogger(__name__)


def undersample(manifest: pd.DataFrame, images: np.ndarray, params: SamplingParams) -> tuple[pd.DataFrame, dict]:
    """Return the kept rows of `manifest` (in their original order) and per-class cluster info.

    `images` is the training array that `manifest["row"]` indexes. The info maps each
    undersampled class to its cluster assignment, 2-D coordinates and kept mask, for plots.
    """
    keep = np.ones(len(manifest), dtype=bool)
    info = {}
    for label, target in params.targets().items():
        positions = np.flatnonzero(manifest["label"].to_numpy() == label)
        if len(positions) <= target:
            continue
        features = image_features(images, manifest["row"].to_numpy()[positions])
        assignment, coords = cluster(features, params.kmeans_clusters, params.seed)
        kept = np.zeros(len(positions), dtype=bool)
        kept[pick_within_clusters(assignment, target, params.seed)] = True
        keep[positions[~kept]] = False
        info[label] = {"assignment": assignment, "coords": coords, "kept": kept}
        log.info("%s: %d -> %d images over %d clusters", label, len(positions), target, assignment.max() + 1)
    return manifest[keep].copy(), info


def plot_clusters(info: dict, path: Path) -> None:
    """One panel per undersampled class: PCA of features, colour = cluster, x = dropped."""
    panels = max(1, len(info))
    fig = Figure(figsize=(5 * panels, 4.5))
    axes = fig.subplots(1, panels, squeeze=False)
    for ax, (label, entry) in zip(axes[0], info.items()):
        coords, kept, assignment = entry["coords"], entry["kept"], entry["assignment"]
        ax.scatter(*coords[kept].T, c=assignment[kept], cmap="tab10", vmin=0, vmax=9, s=14, label="kept")
        ax.scatter(*coords[~kept].T, c=assignment[~kept], cmap="tab10", vmin=0, vmax=9, s=14, marker="x", alpha=0.45, label="dropped")
        ax.set_title(f"{label}: kept {kept.sum()} of {len(kept)} ({assignment.max() + 1} clusters)")
        ax.set_xlabel("PCA 1")
        ax.set_ylabel("PCA 2")
        ax.legend(loc="best", fontsize=8)
    if not info:
        axes[0, 0].text(0.5, 0.5, "no class above its target", ha="center", va="center")
        axes[0, 0].set_axis_off()
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", type=Path, required=True, help="prepare-split output folder")
    parser.add_argument("--out", type=Path, required=True, help="kept training manifest (CSV)")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON file for counts before and after")
    parser.add_argument("--plot", type=Path, required=True, help="PNG of the clusters")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params().sampling

    manifest = read_manifest(args.prepared / "train.csv")
    kept, info = undersample(manifest, open_images(args.prepared / "train.npy"), params)
    plot_clusters(info, args.plot)
    write_json(args.metrics, {"before": class_counts(manifest["label"]), "after": class_counts(kept["label"])})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.out) as tmp:
        write_manifest(kept, tmp)


if __name__ == "__main__":
    main()
