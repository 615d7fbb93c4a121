"""Decoded image arrays and the manifests that travel with them.

A split's images live in one `.npy` file of shape (N, size, size, 3), dtype uint8, opened
memory-mapped so that no stage holds a whole split in memory. Its manifest is a CSV with
one row per image: `image, label, lesion_id, split, row` (`row` indexes the array), the
image's metadata `age_approx, anatom_site_general, sex` (empty when missing) and, for the
balanced training set, `source_image` and `augmented` (its `row`s index prepare-split's train
array: a copy shares its source's row and its metadata).

The writer is hand-written: numpy's `open_memmap` would do the job in one line, but a
writable memory map keeps every written page in the process's memory until it is closed,
so memory grows with the dataset (3.6 GB of pixels at full scale).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from skinlesion.classes import check_labels
from skinlesion.data.metadata import FIELDS
from skinlesion.errors import DataError

MANIFEST_COLUMNS = ("image", "label", "lesion_id", "split", "row")
# the split of an external test set's manifest, and its array's name: external.npy (skinlesion.data.external)
EXTERNAL_SPLIT = "external"


class ImageWriter:
    """Writes a new (count, size, size, 3) uint8 `.npy` file row by row.

    Rows go out through ordinary file writes, so they land in the page cache rather than in
    this process's memory (a writable memory map would hold every written page): memory
    stays flat however many images are written. Unwritten rows read as zeros.
    """

    def __init__(self, path: str | Path, count: int, size: int):
        self.shape = (count, size, size, 3)
        self._row_bytes = size * size * 3
        self._file = open(path, "wb")  # noqa: SIM115 -- closed by close() / the with block of the writer
        np.lib.format.write_array_header_1_0(self._file, {"descr": "|u1", "fortran_order": False, "shape": self.shape})
        self._data_start = self._file.tell()
        self._file.truncate(self._data_start + count * self._row_bytes)

    def write(self, row: int, pixels: np.ndarray) -> None:
        """Store `pixels` ((size, size, 3) uint8) as row `row`."""
        if pixels.shape != self.shape[1:] or pixels.dtype != np.uint8:
            raise ValueError(f"expected a {self.shape[1:]} uint8 image, got {pixels.shape} {pixels.dtype}")
        self._file.seek(self._data_start + row * self._row_bytes)
        self._file.write(np.ascontiguousarray(pixels).data)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ImageWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_images(path: str | Path) -> np.ndarray:
    """An image array opened read-only and memory-mapped: shape (N, H, W, 3), uint8."""
    images = np.load(Path(path), mmap_mode="r")
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise DataError(f"{path}: expected a (N, H, W, 3) uint8 array, found {images.shape} {images.dtype}")
    return images


class ManifestImages:
    """The images of a manifest's rows, in the manifest's order: item i is row `row` of
    `{folder}/{split}.npy` for the manifest's i-th row, so one manifest may draw on several of
    prepare-split's arrays (a cross-validation fold trains on train and val rows).

    Indexed like an array of shape (len(manifest), H, W, 3): an integer, or an array of
    positions followed by slices of the other axes. The arrays are opened memory-mapped on
    first use, and a pickled copy (a DataLoader worker's) carries only paths and row numbers.
    """

    def __init__(self, folder: str | Path, manifest: pd.DataFrame):
        self.folder = Path(folder)
        self.splits = manifest["split"].to_numpy(dtype=str)
        self.rows = manifest["row"].to_numpy(dtype=np.int64)
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, split: str) -> np.ndarray:
        if split not in self._arrays:
            self._arrays[split] = open_images(self.folder / f"{split}.npy")
        return self._arrays[split]

    @property
    def shape(self) -> tuple[int, ...]:
        first = self.array(self.splits[0]) if len(self.splits) else None
        return (len(self.rows), *(first.shape[1:] if first is not None else ()))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> np.ndarray:
        index, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if np.ndim(index) == 0:
            return self.array(self.splits[index])[(self.rows[index], *rest)]
        positions = np.arange(len(self))[index]
        splits = self.splits[positions]
        out = None
        for split in np.unique(splits):
            pixels = np.asarray(self.array(split)[(self.rows[positions[splits == split]], *rest)])
            if out is None:
                out = np.empty((len(positions), *pixels.shape[1:]), dtype=pixels.dtype)
            out[splits == split] = pixels
        return out if out is not None else np.empty((0, *self.shape[1:]), dtype=np.uint8)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": {}}


def copy_rows(source: np.ndarray, rows: np.ndarray, path: str | Path) -> None:
    """Write `source[rows]` to a new array file at `path`, one image at a time."""
    with ImageWriter(path, len(rows), source.shape[1]) as target:
        for index, row in enumerate(rows):
            target.write(index, source[row])


def read_manifest(path: str | Path, classes: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Read a manifest CSV and check its columns, and its labels against `classes` if given."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found")
    text = ("image", "lesion_id", "label", "source_image", *FIELDS)
    manifest = pd.read_csv(path, dtype=dict.fromkeys(text, str), keep_default_na=False)
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing}")
    if classes is not None:
        check_labels(manifest["label"], classes, str(path))
    return manifest


def write_manifest(manifest: pd.DataFrame, path: str | Path) -> None:
    manifest.to_csv(Path(path), index=False, lineterminator="\n")


def class_counts(labels: pd.Series, classes: tuple[str, ...]) -> dict[str, int]:
    """Images per class, every one of `classes` listed (zero where absent), in their order."""
    counts = labels.value_counts()
    return {name: int(counts.get(name, 0)) for name in classes}
