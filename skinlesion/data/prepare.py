"""What prepare-split does: split by lesion, decode every image once into one array per split.

Its params section `prepare` is defined here, so only the stages that read it depend on it.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator
from tqdm import tqdm

from skinlesion.classes import CLASSES_FILE
from skinlesion.config import Section, View
from skinlesion.cores import available_cores
from skinlesion.data.arrays import ImageWriter, class_counts, copy_rows, open_images
from skinlesion.data.images import decode_or_reason, load_image
from skinlesion.data.isic import ImageSource
from skinlesion.data.metadata import FIELDS
from skinlesion.data.split import SPLITS
from skinlesion.errors import DataError


class PrepareParams(Section):
    image_size: int = Field(
        ge=32, le=1024, description="pixels: images are stored as image_size x image_size RGB uint8"
    )
    val_fraction: float = Field(gt=0, lt=1, description="share of the images (by lesion) in the validation split")
    test_fraction: float = Field(gt=0, lt=1, description="share of the images (by lesion) in the test split")
    skip_bad_images: bool = Field(description="skip (and list) missing or corrupt images instead of failing")
    crop_border: bool = Field(description="cut away a dark circular dermoscope frame (winning ISIC 2019 entry)")
    color_constancy: bool = Field(description="Shades of Gray, Minkowski p=6 (winning ISIC 2019 entry)")
    workers: Literal["auto"] | int = Field(
        description="decoding processes; auto: one per CPU core this process may use (its affinity)"
    )
    seed: int = Field(description="the split itself: which lesions go to train, val and test")

    @field_validator("workers", mode="before")
    @classmethod
    def _auto_or_a_count(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        was = " (0 no longer means every core)" if value == 0 and not isinstance(value, bool) else ""
        raise ValueError(f"auto (one process per CPU core) or a number of processes from 1; got {value!r}{was}")

    def decoding_processes(self) -> int:
        """How many processes decode the images."""
        return available_cores() if self.workers == "auto" else self.workers

    @model_validator(mode="after")
    def _fractions_leave_a_training_split(self) -> PrepareParams:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("test_fraction: val_fraction + test_fraction must be below 1")
        return self


# What prepare-split writes: one array and one manifest per split, the skipped images and the
# class list.
OUTPUT_FILES = [f"{name}.{ext}" for name in SPLITS for ext in ("npy", "csv")] + ["skipped.csv", CLASSES_FILE]


class PrepareRun(View):
    """The params prepare-split reads."""

    prepare: PrepareParams


# Each decoding process keeps its own ImageSource (with its own open zip) for the whole run.
_worker: dict = {}


def _init_worker(source: ImageSource, decode: Callable[[BinaryIO], np.ndarray]) -> None:
    _worker.update(source=source, decode=decode)


def _decode(image: str) -> tuple[np.ndarray | None, str]:
    """Decode one image; return (array, "") or (None, reason). Runs in a worker process."""
    return decode_or_reason(functools.partial(_worker["source"].open, image), _worker["decode"])


def decode_all(
    source: ImageSource, images: list[str], decode: Callable[[BinaryIO], np.ndarray], workers: int
) -> Iterator[tuple[np.ndarray | None, str]]:
    """`decode` applied to each of `images`, in order, by `workers` processes (0 or 1: this one)."""
    if workers <= 1:
        _init_worker(source, decode)
        yield from map(_decode, images)
        return
    context = multiprocessing.get_context("fork")
    executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(source, decode))
    try:
        # results come back in order and are written out as they arrive
        yield from executor.map(_decode, images, chunksize=16)
    finally:
        # when the caller stops early (a bad image), what has not started is cancelled; a
        # multiprocessing.Pool's terminate() could hang here, its workers gone
        executor.shutdown(wait=True, cancel_futures=True)


def assign_rows(labels: pd.DataFrame, split: pd.Series) -> pd.DataFrame:
    """The full manifest: labels plus split, each image's row in its split's array and its metadata."""
    manifest = labels[["image", "label", "lesion_id"]].copy()
    manifest["split"] = split
    manifest["row"] = manifest.groupby("split").cumcount()
    return manifest.join(labels[list(FIELDS)])


def write_split_arrays(
    manifest: pd.DataFrame, source: ImageSource, params: PrepareParams, workers: int, out: Path
) -> pd.DataFrame:
    """Decode every image of `manifest` into `<out>/<split>.npy`; return the skipped rows."""
    size = params.image_size
    skipped = []
    decode = functools.partial(
        load_image, size=size, crop_border=params.crop_border, color_constancy=params.color_constancy
    )
    results = decode_all(source, list(manifest["image"]), decode, workers)
    entries = manifest[["image", "split", "row"]].itertuples(index=False)
    with contextlib.ExitStack() as stack:
        arrays = {
            name: stack.enter_context(ImageWriter(out / f"{name}.npy", int((manifest["split"] == name).sum()), size))
            for name in SPLITS
        }
        progress = tqdm(results, total=len(manifest), desc="prepare-split", unit="img")
        for (image, split, row), (pixels, reason) in zip(entries, progress):
            if pixels is None:
                where = source.describe(image)
                if not params.skip_bad_images:
                    raise DataError(f"{where}: {reason} (set prepare.skip_bad_images: true to skip such images)")
                skipped.append({"image": image, "path": where, "reason": reason})
                continue
            arrays[split].write(row, pixels)
    return pd.DataFrame(skipped, columns=["image", "path", "reason"])


def drop_skipped(manifest: pd.DataFrame, skipped: pd.DataFrame, out: Path) -> pd.DataFrame:
    """Remove skipped images from the manifest and compact the arrays to match it."""
    keep = manifest[~manifest["image"].isin(skipped["image"])].copy()
    for name in SPLITS:
        rows = keep.loc[keep["split"] == name, "row"].to_numpy()
        compact = out / f"{name}.compact.npy"
        copy_rows(open_images(out / f"{name}.npy"), rows, compact)
        os.replace(compact, out / f"{name}.npy")
    keep["row"] = keep.groupby("split").cumcount()
    return keep


def split_counts(manifest: pd.DataFrame, classes: tuple[str, ...]) -> dict:
    """Per split: images per class and in total."""
    counts = {}
    for name in SPLITS:
        part = manifest[manifest["split"] == name]
        counts[name] = {**class_counts(part["label"], classes), "total": len(part)}
    return counts
