"""Decoded image arrays and the manifests that travel with them.

A split's images live in one `.npy` file of shape (N, size, size, 3), dtype uint8, opened
memory-mapped so that no stage holds a whole split in memory. Its manifest is a CSV with
one row per image: `image, label, lesion_id, split, row` (`row` indexes the array) and,
for the balanced training set, `source_image` and `augmented`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stages.isic import DataError
from stages.params import CLASSES

MANIFEST_COLUMNS = ("image", "label", "lesion_id", "split", "row")


def create_images(path: str | Path, count: int, size: int) -> np.memmap:
    """A new, zero-filled (count, size, size, 3) uint8 array on disk, open for writing."""
    return np.lib.format.open_memmap(Path(path), mode="w+", dtype=np.uint8, shape=(count, size, size, 3))


def open_images(path: str | Path) -> np.ndarray:
    """An image array opened read-only and memory-mapped: shape (N, H, W, 3), uint8."""
    images = np.load(Path(path), mmap_mode="r")
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise DataError(f"{path}: expected a (N, H, W, 3) uint8 array, found {images.shape} {images.dtype}")
    return images


def copy_rows(source: np.ndarray, rows: np.ndarray, path: str | Path, chunk: int = 256) -> None:
    """Write `source[rows]` to a new array file at `path`, a chunk at a time."""
    target = create_images(path, len(rows), source.shape[1])
    for start in range(0, len(rows), chunk):
        target[start : start + chunk] = source[rows[start : start + chunk]]
    target.flush()
    del target


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest CSV and check its columns and labels."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found")
    manifest = pd.read_csv(path, dtype={"image": str, "lesion_id": str, "label": str, "source_image": str}, keep_default_na=False)
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing}")
    unknown = manifest.loc[~manifest["label"].isin(CLASSES), "label"]
    if len(unknown):
        raise DataError(f"{path}: unknown label {unknown.iloc[0]!r}")
    return manifest


def write_manifest(manifest: pd.DataFrame, path: str | Path) -> None:
    manifest.to_csv(Path(path), index=False, lineterminator="\n")


def class_counts(labels: pd.Series) -> dict[str, int]:
    """Images per class, every class listed (zero where absent), in ISIC column order."""
    counts = labels.value_counts()
    return {name: int(counts.get(name, 0)) for name in CLASSES}
