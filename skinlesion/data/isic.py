"""Reading the ISIC 2019 training files: the two CSVs and where the JPEG images lie.

The same code reads the real ISIC 2019 download, the synthetic sample, which is written in
the same format, and a data root of one's own in that layout: `ISIC_2019_Training_GroundTruth.csv`
(image, then one one-hot float column per class: MEL..SCC for ISIC 2019, and optionally a last
column UNK that must stay 0), `ISIC_2019_Training_Metadata.csv` (image, and any of
age_approx, anatom_site_general, lesion_id, sex; optional as a whole) and
`ISIC_2019_Training_Input/<image>.jpg`, or those JPEGs inside the official
`ISIC_2019_Training_Input.zip`. The class list is the ground truth's columns (docs/own-data.md).
"""

from __future__ import annotations

import csv
import io
import logging
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
import pandas as pd

from skinlesion.classes import CLASSES
from skinlesion.data.metadata import FIELDS, check_metadata
from skinlesion.data.split import lesion_groups
from skinlesion.errors import DataError

GROUND_TRUTH_CSV = "ISIC_2019_Training_GroundTruth.csv"
METADATA_CSV = "ISIC_2019_Training_Metadata.csv"
IMAGE_DIR = "ISIC_2019_Training_Input"
IMAGE_ZIP = "ISIC_2019_Training_Input.zip"
UNKNOWN = "UNK"  # ISIC 2019's column for the test set's unknown lesions: never a training label
GROUND_TRUTH_COLUMNS = ("image", *CLASSES, UNKNOWN)  # ISIC 2019's own (and the submission format's)
METADATA_COLUMNS = ("image", "age_approx", "anatom_site_general", "lesion_id", "sex")

log = logging.getLogger(__name__)


def _read_csv(path: Path) -> pd.DataFrame:
    """The CSV at `path`, every cell text, names stripped; `image` must be its first column."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    # utf-8-sig drops a byte-order mark; every cell stays text so nothing is silently coerced
    with open(path, newline="", encoding="utf-8-sig") as file:
        header, *rows = [row for row in csv.reader(file) if row] or [[]]
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise DataError(f"{path}: line {line} has {len(row)} fields, the header {len(header)} ({header})")
    frame = pd.DataFrame(rows, columns=[c.strip() for c in header], dtype=str)
    if not len(frame.columns) or frame.columns[0] != "image":
        raise DataError(f"{path}: the first column must be 'image', found {list(frame.columns)}")
    frame["image"] = frame["image"].str.strip()
    duplicated = frame[frame["image"].duplicated(keep=False)]
    if len(duplicated):
        first = duplicated.iloc[0]
        rows = [int(i) + 2 for i in duplicated.index[duplicated["image"] == first["image"]]]
        raise DataError(f"{path}: image {first['image']!r} appears more than once (lines {rows})")
    empty = frame.index[frame["image"] == ""]
    if len(empty):
        raise DataError(f"{path}: line {int(empty[0]) + 2} has no image name")
    return frame


def classes_of(columns: list[str], path: Path) -> tuple[str, ...]:
    """The class list of a ground-truth CSV with `columns`: every column after `image`, but a
    last UNK column."""
    classes = tuple(columns[1:-1] if columns[-1] == UNKNOWN else columns[1:])
    if len(classes) < 2 or UNKNOWN in classes:
        raise DataError(f"{path}: expected image, at least two class columns and UNK only last, found {columns}")
    return classes


def ground_truth_classes(root: str | Path) -> tuple[str, ...]:
    """The classes of the ground-truth CSV under `root`, in its column order: ISIC 2019's eight
    (skinlesion.classes.CLASSES) for ISIC 2019 and the sample."""
    path = Path(root) / GROUND_TRUTH_CSV
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, newline="", encoding="utf-8-sig") as file:  # the header alone
        return classes_of([column.strip() for column in next(csv.reader(file), ["image"])], path)


def _labels_from_one_hot(frame: pd.DataFrame, path: Path) -> pd.Series:
    """The class name of each row; every row must be one-hot over the training classes."""
    classes = classes_of(list(frame.columns), path)
    label_columns = list(frame.columns[1:])
    try:
        values = frame[label_columns].apply(pd.to_numeric, errors="raise").to_numpy(float)
    except ValueError:
        for line, row in zip(frame.index + 2, frame[label_columns].itertuples(index=False)):
            for column, cell in zip(label_columns, row):
                try:
                    float(cell)
                except ValueError:
                    raise DataError(
                        f"{path}: line {line} ({frame.at[line - 2, 'image']}): "
                        f"column {column} is {cell!r}, not a number"
                    ) from None
        raise
    is_binary = np.isin(values, (0.0, 1.0)).all(axis=1)
    is_one_hot = is_binary & (values.sum(axis=1) == 1.0)
    for index in np.flatnonzero(~is_one_hot)[:1]:
        raise DataError(
            f"{path}: line {index + 2} ({frame['image'].iloc[index]}): labels must be one-hot "
            f"(exactly one 1.0, the rest 0.0), got {dict(zip(label_columns, values[index]))}"
        )
    unknown = np.flatnonzero(values[:, -1] == 1.0) if label_columns[-1] == UNKNOWN else []
    if len(unknown):
        index = unknown[0]
        raise DataError(
            f"{path}: line {index + 2} ({frame['image'].iloc[index]}): class UNK is not "
            f"one of the training classes {list(classes)}"
        )
    return pd.Series(np.asarray(classes)[values[:, : len(classes)].argmax(axis=1)], index=frame.index)


def _read_metadata(path: Path, images: pd.Series) -> pd.DataFrame:
    """The metadata CSV at `path` with every column of METADATA_COLUMNS; a column it lacks, or
    the whole file when absent, reads as missing values."""
    if not path.is_file():
        log.warning("%s: not found; every image's metadata is missing and each image is its own lesion", path)
        return pd.DataFrame({"image": images, **dict.fromkeys(METADATA_COLUMNS[1:], "")})
    meta = _read_csv(path)
    unknown = [c for c in meta.columns if c not in METADATA_COLUMNS]
    if unknown:
        raise DataError(f"{path}: unknown columns {unknown}; the metadata columns are {list(METADATA_COLUMNS)}")
    if "lesion_id" not in meta.columns:
        log.warning("%s: no lesion_id column; each image is its own lesion", path)
    return meta.reindex(columns=list(METADATA_COLUMNS), fill_value="")


def read_labels(root: str | Path) -> pd.DataFrame:
    """Read and cross-check the ground truth and metadata under `root`.

    Returns one row per image, in ground-truth order, with columns `image`, `label`
    (class name), `lesion_id` (empty when unknown), `group` (the lesion, or the image
    itself when it has no lesion id: the unit that must never straddle two splits) and the
    metadata `age_approx`, `anatom_site_general`, `sex` (empty when missing; checked by
    skinlesion.data.metadata.check_metadata). The metadata CSV is optional, and so is each of
    its columns but image: what it lacks reads as missing values, and an image without a
    lesion id is its own lesion.
    """
    root = Path(root)
    truth_path, meta_path = root / GROUND_TRUTH_CSV, root / METADATA_CSV
    truth = _read_csv(truth_path)
    meta = _read_metadata(meta_path, truth["image"])
    labels = pd.DataFrame({"image": truth["image"], "label": _labels_from_one_hot(truth, truth_path)})

    missing = labels.loc[~labels["image"].isin(meta["image"]), "image"]
    if len(missing):
        raise DataError(
            f"{meta_path}: no row for image {missing.iloc[0]!r} of {truth_path.name} ({len(missing)} images missing)"
        )
    lesions = meta.set_index("image")["lesion_id"].str.strip()
    labels["lesion_id"] = labels["image"].map(lesions)
    metadata = check_metadata(meta, str(meta_path)).set_index(meta["image"])
    for field in FIELDS:
        labels[field] = labels["image"].map(metadata[field])
    labels["group"] = lesion_groups(labels)

    per_lesion = labels[labels["lesion_id"] != ""].groupby("lesion_id")["label"].nunique()
    mixed = per_lesion[per_lesion > 1]
    if len(mixed):
        lesion = mixed.index[0]
        found = sorted(labels.loc[labels["lesion_id"] == lesion, "label"].unique())
        raise DataError(f"{meta_path}: lesion {lesion!r} has images of several classes {found}")
    return labels.reset_index(drop=True)


class ImageSource:
    """The JPEGs under a data root: the folder `ISIC_2019_Training_Input/` or, if there is
    none, the official `ISIC_2019_Training_Input.zip`, read in place without extracting.

    A source pickles without its open archive, so each worker process reopens it.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.folder, self.archive = self.root / IMAGE_DIR, self.root / IMAGE_ZIP
        if not self.folder.is_dir() and not self.archive.is_file():
            raise DataError(f"{self.root}: found neither {IMAGE_DIR}/ nor {IMAGE_ZIP}")
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, str] = {}

    @property
    def is_zip(self) -> bool:
        return not self.folder.is_dir()

    def describe(self, image: str) -> str:
        """Where `image` is read from, for messages."""
        name = f"{image}.jpg"
        if self.is_zip:
            return f"{self.archive}:{self._member(name)}"
        return str(self.folder / name)

    def _member(self, name: str) -> str:
        if self._zip is None:
            try:
                self._zip = zipfile.ZipFile(self.archive)
            except zipfile.BadZipFile as error:
                raise DataError(f"{self.archive}: not a readable zip file ({error})") from None
            # members may sit in a folder inside the archive; index them by file name
            self._members = {
                PurePosixPath(info.filename).name: info.filename for info in self._zip.infolist() if not info.is_dir()
            }
        return self._members.get(name, name)

    def open(self, image: str) -> BinaryIO:
        """A binary file object holding the JPEG of `image`; FileNotFoundError if absent."""
        name = f"{image}.jpg"
        if not self.is_zip:
            return open(self.folder / name, "rb")
        member = self._member(name)
        try:
            return io.BytesIO(self._zip.read(member))
        except KeyError:
            raise FileNotFoundError(f"{self.archive}: no member {name}") from None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_zip": None, "_members": {}}
