"""Stage prepare-split: validate the ISIC files, split by lesion, decode every image once.

Writes, under --out, `<split>.npy` (N, size, size, 3) uint8 and `<split>.csv` manifests for
train, val and test, plus `skipped.csv` (images skipped as missing or corrupt, when
`prepare.skip_bad_images` allows it); and per-class counts per split to --metrics.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import multiprocessing
import os
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from stages.cores import available_cores
from stages.errors import DataError
from stages.files import atomic_dir, write_json
from stages.isic import ImageSource, load_image, read_labels
from stages.params import PrepareParams, load_params
from stages.splitting import SPLITS, split_by_lesion
from stages.store import ImageWriter, class_counts, copy_rows, open_images, write_manifest

log = logging.getLogger(__name__)


# Each decoding process keeps its own ImageSource (with its own open zip) for the whole run.
_worker: dict = {}


def _init_worker(source: ImageSource, decode: Callable[[BinaryIO], np.ndarray]) -> None:
    _worker.update(source=source, decode=decode)


def _decode(image: str) -> tuple[np.ndarray | None, str]:
    """Decode one image; return (array, "") or (None, reason). Runs in a worker process."""
    try:
        with _worker["source"].open(image) as file:
            return _worker["decode"](file), ""
    except FileNotFoundError:
        return None, "file not found"
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return None, f"cannot decode: {error}"


def decode_all(source: ImageSource, images: list[str], decode: Callable[[BinaryIO], np.ndarray], workers: int) -> Iterator[tuple[np.ndarray | None, str]]:
    """`decode` applied to each of `images`, in order, by `workers` processes (0 or 1: this one)."""
    if workers <= 1:
        _init_worker(source, decode)
        yield from map(_decode, images)
        return
    with multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker, initargs=(source, decode)) as pool:
        # results come back in order and are written out as they arrive
        yield from pool.imap(_decode, images, chunksize=16)


def assign_rows(labels: pd.DataFrame, split: pd.Series) -> pd.DataFrame:
    """The full manifest: labels plus split and each image's row in its split's array."""
    manifest = labels[["image", "label", "lesion_id"]].copy()
    manifest["split"] = split
    manifest["row"] = manifest.groupby("split").cumcount()
    return manifest


def write_split_arrays(manifest: pd.DataFrame, source: ImageSource, params: PrepareParams, workers: int, out: Path) -> pd.DataFrame:
    """Decode every image of `manifest` into `<out>/<split>.npy`; return the skipped rows."""
    size = params.image_size
    skipped = []
    decode = functools.partial(load_image, size=size, crop_border=params.crop_border, color_constancy=params.color_constancy)
    results = decode_all(source, list(manifest["image"]), decode, workers)
    entries = manifest[["image", "split", "row"]].itertuples(index=False)
    with contextlib.ExitStack() as stack:
        arrays = {name: stack.enter_context(ImageWriter(out / f"{name}.npy", int((manifest["split"] == name).sum()), size)) for name in SPLITS}
        for (image, split, row), (pixels, reason) in zip(entries, tqdm(results, total=len(manifest), desc="prepare-split", unit="img")):
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


def split_counts(manifest: pd.DataFrame) -> dict:
    """Per split: images per class and in total."""
    counts = {}
    for name in SPLITS:
        part = manifest[manifest["split"] == name]
        counts[name] = {**class_counts(part["label"]), "total": len(part)}
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="folder with the ISIC 2019 CSVs and the images (folder or zip)")
    parser.add_argument("--out", type=Path, required=True, help="folder for arrays and manifests")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON file for the split counts")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params: PrepareParams = load_params().prepare

    labels = read_labels(args.data_root)
    split = split_by_lesion(labels, val_fraction=params.val_fraction, test_fraction=params.test_fraction, seed=params.seed)
    manifest = assign_rows(labels, split)
    workers = params.workers or available_cores()
    with atomic_dir(args.out) as tmp:
        skipped = write_split_arrays(manifest, ImageSource(args.data_root), params, workers, tmp)
        if len(skipped):
            log.warning("skipped %d images; see %s", len(skipped), args.out / "skipped.csv")
            manifest = drop_skipped(manifest, skipped, tmp)
        skipped.to_csv(tmp / "skipped.csv", index=False)
        for name in SPLITS:
            write_manifest(manifest[manifest["split"] == name], tmp / f"{name}.csv")
    counts = split_counts(manifest)
    write_json(args.metrics, {**counts, "skipped": len(skipped)})
    log.info("split %d images: %s", len(manifest), {name: c["total"] for name, c in counts.items()})


if __name__ == "__main__":
    main()
