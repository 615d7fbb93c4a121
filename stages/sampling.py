"""Class rebalancing of the training split: K-Means undersampling and the oversampling plan.

Both follow imbalanced-learn's rules for resamplers: they take a random state, never
mutate their input, and keep real samples (never centroids, which would not be images).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

FEATURE_SIDE = 16  # images are pooled to 16x16 RGB before clustering
FEATURE_DIMS = 32  # PCA components the clustering runs on


def image_features(images: np.ndarray, rows: np.ndarray, chunk: int = 512) -> np.ndarray:
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
    """K-Means on PCA-reduced features: (cluster index per row, 2-D PCA coordinates for plots)."""
    n_components = min(FEATURE_DIMS, *features.shape)
    reduced = PCA(n_components=n_components, random_state=seed).fit_transform(features)
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


def oversample_plan(manifest: pd.DataFrame, targets: dict[str, int], seed: int) -> pd.DataFrame:
    """Which real images to copy, and how often, to fill each class up to its target.

    Returns one row per copy to make (columns of `manifest`, for its source image, plus
    `copy`: the copy's number for that source). Sources are used in turn, in a seeded
    shuffled order, so every image of a class is copied equally often (to within one).
    """
    rng = np.random.default_rng(seed)
    plans = []
    for label, target in targets.items():
        real = manifest[manifest["label"] == label]
        missing = target - len(real)
        if missing <= 0:
            continue
        if len(real) == 0:
            raise ValueError(f"class {label} has no training images to oversample from")
        order = rng.permutation(len(real))
        turns = np.resize(order, missing)  # order repeated until `missing` long
        plan = real.iloc[turns].copy()
        plan["copy"] = np.arange(missing) // len(real)
        plans.append(plan)
    if not plans:
        return manifest.iloc[:0].assign(copy=pd.Series(dtype=np.int64))
    return pd.concat(plans, ignore_index=True)
