"""What predict reads: the images of its inputs (files, folders, zip archives read in place),
decoded exactly as prepare-split decodes them, and each image's metadata for a model that
fuses it."""

from __future__ import annotations

import functools
import io
import logging
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
import pandas as pd

from skinlesion.data.images import decode_or_reason, load_image
from skinlesion.data.metadata import FIELDS, check_metadata
from skinlesion.errors import DataError
from skinlesion.model.info import ModelInfo

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


class ZipMember:
    """An image inside a zip archive (the official `ISIC_2019_Test_Input.zip`, say), read in
    place; named `archive:member` in messages, its stem is the member's file name's."""

    def __init__(self, archive: Path, member: str):
        self.archive, self.member = archive, member
        self.stem = PurePosixPath(member).stem

    def __str__(self) -> str:
        return f"{self.archive}:{self.member}"

    def open(self) -> BinaryIO:
        return io.BytesIO(_zip(self.archive).read(self.member))


# one image to predict: a file, or a member of a zip archive
ImageSource = Path | ZipMember


@functools.cache
def _zip(archive: Path) -> zipfile.ZipFile:
    return zipfile.ZipFile(archive)


def expand_inputs(paths: list[Path]) -> list[ImageSource]:
    """The images to predict: a file as given, then the images of a folder and of a zip archive
    (by suffix, sorted by name). A folder or archive without images is a DataError."""
    images: list[ImageSource] = []
    for path in paths:
        if path.is_dir():
            found = sorted(item for item in path.iterdir() if item.suffix.lower() in IMAGE_SUFFIXES)
        elif path.suffix.lower() == ".zip" and path.is_file():
            try:
                names = _zip(path).namelist()
            except zipfile.BadZipFile as error:
                raise DataError(f"{path}: not a readable zip file ({error})") from None
            members = sorted(name for name in names if PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES)
            found = [ZipMember(path, name) for name in members]
        else:
            found = [path]
        if not found:
            raise DataError(f"{path}: no images in it (looked for {', '.join(IMAGE_SUFFIXES)})")
        images += found
    return images


def image_decoder(info: ModelInfo) -> Callable[[BinaryIO], np.ndarray]:
    """The decoding of an image file for the model `info` describes, to a (size, size, 3) uint8
    array: what read_images applies to each file, and skinlesion serve to each upload."""
    return functools.partial(
        load_image,
        size=info.image_size,
        crop_border=info.crop_border,
        color_constancy=info.color_constancy,
    )


def read_images(paths: list[ImageSource], info: ModelInfo) -> tuple[list[np.ndarray | None], list[str]]:
    """Decoded (size, size, 3) uint8 images, None where a file failed, and the error messages."""
    decode = image_decoder(info)
    openers = [path.open if isinstance(path, ZipMember) else functools.partial(open, path, "rb") for path in paths]
    results = [decode_or_reason(opener, decode) for opener in openers]
    return [pixels for pixels, _ in results], [reason for _, reason in results]


def image_metadata(
    paths: list[ImageSource],
    info: ModelInfo,
    *,
    metadata_file: Path | None = None,
    metadata_values: Mapping[str, str | None] | None = None,
    model_path: Path,
) -> pd.DataFrame | None:
    """The metadata of each of `paths` for the model, checked, one row per path (empty where
    missing), from the metadata CSV `metadata_file` or the same `metadata_values` (age_approx,
    sex, anatom_site_general) for every image; None when the model takes none. Warns about
    every image whose metadata is missing entirely. Messages name these two parameters."""
    given = {field: value for field, value in (metadata_values or {}).items() if value is not None}
    if metadata_file and given:
        raise DataError("metadata_file and metadata_values: give a metadata file or values for every image, not both")
    if not info.uses_metadata:
        if metadata_file or given:
            log.warning("%s: the model takes no metadata; metadata_file/metadata_values are ignored", model_path)
        return None
    empty = dict.fromkeys(FIELDS, "")
    if given:
        row = check_metadata(pd.DataFrame([{**empty, **given}]), "metadata_values").iloc[0].to_dict()
        return pd.DataFrame([row] * len(paths))
    if not metadata_file:
        log.warning(
            "%s: the model takes age, sex and anatomical site, and none were given (metadata_file CSV or "
            "metadata_values): all treated as missing, which lowers its accuracy",
            model_path,
        )
        return pd.DataFrame([empty] * len(paths))
    return _table_metadata(paths, metadata_file)


def _table_metadata(paths: list[ImageSource], metadata_file: Path) -> pd.DataFrame:
    """The rows of the metadata CSV `metadata_file` for `paths`, matched by name without extension."""
    empty = dict.fromkeys(FIELDS, "")
    table = pd.read_csv(metadata_file, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    if "image" not in table.columns:
        raise DataError(f"{metadata_file}: no column 'image' (found {list(table.columns)})")
    table = check_metadata(table, str(metadata_file)).set_index(table["image"].str.strip())
    names = [path.stem for path in paths]
    absent = [name for name in names if name not in table.index]
    if absent:
        log.warning(
            "%s: no row for %d of the images (%s%s): their metadata is treated as missing",
            metadata_file,
            len(absent),
            ", ".join(absent[:3]),
            ", ..." if len(absent) > 3 else "",
        )
    return pd.DataFrame([table.loc[name].to_dict() if name in table.index else empty for name in names])
