"""K-Means undersampling: cut every training class above its target down to the target.

Each such class is clustered with K-Means on image features; the target is shared out to
the clusters in proportion to their sizes and images are drawn within clusters, so the
kept images cover the class's sub-types as the full class did. It follows imbalanced-learn's
rules for resamplers (a random state, no mutation of the input) and keeps real images, as
imbalanced-learn's ClusterCentroids does only with `voting="hard"` and then one image per
centroid, not a share of each cluster; so it is written here, on scikit-learn's KMeans.
The params section `sampling` is skinlesion.resampling.params's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from skinlesion.atomic import atomic_file
from skinlesion.config import View
from skinlesion.data.arrays import ManifestImages
from skinlesion.resampling.params import UndersampleParams

log = logging.getLogger(__name__)

FEATURE_SIDE = 16  # images are pooled to 16x16 RGB before clustering
FEATURE_DIMS = 32  # PCA components the clustering runs on


class UndersampleRun(View):
    """The params kmeans-undersample reads."""

    sampling: UndersampleParams


def image_features(images: ManifestImages | np.ndarray, rows: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Colour-layout features of `images[rows]`: (len(rows), 16*16*3) float32 in [0, 1].

    Each image is average-pooled to 16x16, which keeps colour, lesion size and lighting
    (the structure that separates sub-types) and drops pixel noise. Reads in chunks, so a
    memory-mapped array is never loaded whole.
    """
    step = images.shape[1] // FEATURE_SIDE
    side = step * FEATURE_SIDE  # an image size that is not a multiple of 16 loses its edge pixels
    features = np.empty((len(rows), FEATURE_SIDE * FEATURE_SIDE * 3), dtype=np.float32)
    for start in range(0, len(rows), chunk):
        batch = np.asarray(images[rows[start : start + chunk], :side, :side])  # (n, side, side, 3) uint8
        n = len(batch)
        # box sums in integers, rows first then columns: ~20x faster than a float mean
        row_sums = batch.reshape(n * FEATURE_SIDE, step, side * 3).sum(axis=1, dtype=np.uint16)
        box_sums = row_sums.reshape(n, FEATURE_SIDE, FEATURE_SIDE, step, 3).sum(axis=3, dtype=np.uint32)
        features[start : start + n] = box_sums.reshape(n, -1) / (step * step * 255.0)
    return features


def cluster(features: np.ndarray, n_clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """K-Means on PCA-reduced features: (cluster index per row, 2-D PCA coordinates for plots).
    With one cluster every row is in it: a uniform draw (sampling.undersample: random)."""
    n_components = min(FEATURE_DIMS, *features.shape)
    reduced = PCA(n_components=n_components, random_state=seed).fit_transform(features)
    if n_clusters == 1:
        return np.zeros(len(features), dtype=np.int32), reduced[:, :2]
    n_clusters = min(n_clusters, len(features))
    assignment = KMeans(n_clusters=n_clusters, n_init=4, random_state=seed).fit_predict(reduced)
    return assignment, reduced[:, :2]


def allocate(cluster_sizes: np.ndarray, target: int) -> np.ndarray:
    """Split `target` over clusters in proportion to their sizes (largest remainder).

    The result sums to exactly `target`, never exceeds a cluster's size, and each cluster
    gets its exact proportional share rounded up or down. Ties in the remainder go to the
    lower cluster index, so the result is deterministic.
    """
    sizes = np.asarray(cluster_sizes, dtype=np.int64)
    if not 0 <= target <= sizes.sum():
        raise ValueError(f"target {target} is outside [0, {sizes.sum()}]")
    exact = sizes * target / sizes.sum()
    quota = np.floor(exact).astype(np.int64)
    remainder = exact - quota
    order = np.lexsort((np.arange(len(sizes)), -remainder))  # largest remainder first
    quota[order[: target - quota.sum()]] += 1
    return quota


def pick_within_clusters(assignment: np.ndarray, target: int, seed: int) -> np.ndarray:
    """Positions (sorted) of `target` items, drawn per cluster in proportion to cluster size."""
    labels, sizes = np.unique(assignment, return_counts=True)
    quota = allocate(sizes, target)
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(assignment == label), size=n, replace=False) for label, n in zip(labels, quota)]
    return np.sort(np.concatenate(chosen))


def undersample(
    manifest: pd.DataFrame, images: ManifestImages | np.ndarray, params: UndersampleParams, classes: tuple[str, ...]
) -> tuple[pd.DataFrame, dict]:
    """Return the kept rows of `manifest` (in their original order) and per-class cluster info;
    `classes` are the data's.

    `images[i]` is the image of the manifest's i-th row (ManifestImages). The info maps each
    undersampled class to its cluster assignment, 2-D coordinates and kept mask, for plots.
    """
    keep = np.ones(len(manifest), dtype=bool)
    info = {}
    if params.undersample == "none":
        return manifest.copy(), info
    clusters = params.kmeans_clusters if params.undersample == "kmeans" else 1
    for label, target in params.targets(classes).items():
        positions = np.flatnonzero(manifest["label"].to_numpy() == label)
        if len(positions) <= target:
            continue
        features = image_features(images, positions)
        assignment, coords = cluster(features, clusters, params.seed)
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
        ax.scatter(
            *coords[~kept].T,
            c=assignment[~kept],
            cmap="tab10",
            vmin=0,
            vmax=9,
            s=14,
            marker="x",
            alpha=0.45,
            label="dropped",
        )
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
