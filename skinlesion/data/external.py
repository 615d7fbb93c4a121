"""External test sets (`evaluate.external`): a folder in data.root's layout decoded as
prepare-split decodes (the same size, border crop and colour constancy), less every image the
pipeline's own data already holds.

The leakage guard leaves out an external image that is also a training, validation or test
image by any of three signs, each counted on its own (one image may show several): the same
ISIC id (with ISIC's `_downsampled` suffix ignored on both sides), the same lesion id
(another image of a lesion the model was trained or tested on), or the same pixels after
decoding (an exact copy under another name; a copy re-encoded, resized or cropped differs in
its pixels and is not caught).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from skinlesion.classes import check_labels, read_classes
from skinlesion.data.arrays import EXTERNAL_SPLIT, ImageWriter, copy_rows, open_images, read_manifest, write_manifest
from skinlesion.data.images import load_image
from skinlesion.data.isic import GROUND_TRUTH_CSV, ImageSource, read_labels
from skinlesion.data.metadata import FIELDS
from skinlesion.data.prepare import PrepareParams, decode_all
from skinlesion.data.split import SPLITS
from skinlesion.errors import DataError

GUARDS = ("isic_id", "lesion_id", "pixels")
OUTPUT_FILES = [f"{EXTERNAL_SPLIT}.npy", f"{EXTERNAL_SPLIT}.csv", "excluded.csv", "summary.json"]


def pixel_digest(pixels: np.ndarray) -> str:
    """A digest of a decoded image's pixels: equal for equal arrays."""
    return hashlib.sha1(np.ascontiguousarray(pixels).tobytes()).hexdigest()


def isic_id(image: str) -> str:
    """An image's ISIC id: its name without ISIC's `_downsampled` suffix."""
    return image.removesuffix("_downsampled")


def prepared_images(prepared: Path) -> tuple[pd.DataFrame, set[str]]:
    """prepare-split's images (train, val and test manifests together) and their pixel digests."""
    manifests, digests = [], set()
    for split in SPLITS:
        manifest = read_manifest(prepared / f"{split}.csv")
        pixels = open_images(prepared / f"{split}.npy")
        digests |= {pixel_digest(pixels[row]) for row in manifest["row"]}
        manifests.append(manifest)
    return pd.concat(manifests, ignore_index=True), digests


def leaks(
    labels: pd.DataFrame, digests: list[str | None], known: pd.DataFrame, known_digests: set[str]
) -> pd.DataFrame:
    """Per external image (rows of `labels`), which GUARDS catch it: one boolean column each."""
    lesions = set(known.loc[known["lesion_id"] != "", "lesion_id"])
    known_ids = set(known["image"].map(isic_id))
    return pd.DataFrame(
        {
            "isic_id": labels["image"].map(isic_id).isin(known_ids).to_numpy(),
            "lesion_id": ((labels["lesion_id"] != "") & labels["lesion_id"].isin(lesions)).to_numpy(),
            "pixels": np.array([digest in known_digests for digest in digests]),
        }
    )


def decode_external(root: Path, labels: pd.DataFrame, params: PrepareParams, every: Path) -> tuple[list, list]:
    """Decode each image of `labels` (the set at `root`) into the array `every`, a row each;
    returns each image's pixel digest (None where unreadable) and the images skipped, with why."""
    source, size = ImageSource(root), params.image_size
    decode = functools.partial(
        load_image, size=size, crop_border=params.crop_border, color_constancy=params.color_constancy
    )
    digests: list[str | None] = []
    skipped = []
    with ImageWriter(every, len(labels), size) as writer:
        results = decode_all(source, list(labels["image"]), decode, params.decoding_processes())
        for row, (image, (pixels, reason)) in enumerate(
            zip(labels["image"], tqdm(results, total=len(labels), desc=root.name))
        ):
            if pixels is None:
                if not params.skip_bad_images:
                    raise DataError(
                        f"{source.describe(image)}: {reason} (set prepare.skip_bad_images: true to skip such images)"
                    )
                skipped.append({"image": image, "reason": reason})
                digests.append(None)
                continue
            writer.write(row, pixels)
            digests.append(pixel_digest(pixels))
    return digests, skipped


def prepare_external(root: Path, prepared: Path, params: PrepareParams, out: Path) -> dict:
    """Decode the external set at `root` into `out` (OUTPUT_FILES: the array and manifest of the
    images kept, the images left out and why, and the summary); returns the summary. Its labels
    must be among the classes of prepare-split's folder `prepared`."""
    if not root.is_dir():
        raise DataError(f"{root}: external test set folder not found")
    labels = read_labels(root)
    check_labels(labels["label"], read_classes(prepared), str(root / GROUND_TRUTH_CSV))
    every = out / "every.npy"
    digests, skipped = decode_external(root, labels, params, every)
    readable = np.array([digest is not None for digest in digests])
    # an unreadable image is counted under skipped, not under the guards
    caught = leaks(labels, digests, *prepared_images(prepared)) & readable[:, None]
    left_out = caught.any(axis=1).to_numpy()
    kept = np.flatnonzero(readable & ~left_out)
    copy_rows(open_images(every), kept, out / f"{EXTERNAL_SPLIT}.npy")
    every.unlink()
    manifest = labels.iloc[kept][["image", "label", "lesion_id"]].reset_index(drop=True)
    manifest["split"], manifest["row"] = EXTERNAL_SPLIT, np.arange(len(kept))
    write_manifest(manifest.join(labels.iloc[kept][list(FIELDS)].reset_index(drop=True)), out / f"{EXTERNAL_SPLIT}.csv")
    reasons = caught[left_out].apply(lambda row: ";".join(guard for guard in GUARDS if row[guard]), axis=1)
    excluded = pd.DataFrame({"image": labels["image"][left_out].to_numpy(), "reason": reasons.to_numpy()})
    pd.concat([excluded, pd.DataFrame(skipped, columns=["image", "reason"])]).to_csv(out / "excluded.csv", index=False)
    summary = {
        "root": str(root),
        "images_in_folder": len(labels),
        "images": len(kept),
        "skipped": len(skipped),
        "overlap_excluded": {**{guard: int(caught[guard].sum()) for guard in GUARDS}, "total": int(left_out.sum())},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
