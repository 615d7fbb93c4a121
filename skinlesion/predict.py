"""Predicting new dermoscopy images with a trained model: the library behind `skinlesion
predict` (skinlesion/cli.py owns its arguments and what it prints).

Images are decoded exactly as prepare-split does (size, border crop and colour constancy come
from the model file) and classified in batches by a Classifier: a model file through torch
(skinlesion.model.classifier), or its ONNX export through ONNX Runtime
(skinlesion.export.runtime), which predicts without importing torch. A model trained with
`model.use_metadata` also takes each image's age, sex and anatomical site (image_metadata).
Inputs are image files, folders of them, or zip archives of them read in place (the official
test zip). Results come batch by batch (predict_batches), so memory does not grow with the
number of images, and are written as they come to files that a rerun continues (OutputFile):
a results table (CSV or JSON lines) and the ISIC 2019 submission CSV.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import logging
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

import numpy as np
import pandas as pd

from skinlesion.classes import CLASSES
from skinlesion.data.images import decode_or_reason, load_image
from skinlesion.data.isic import GROUND_TRUTH_COLUMNS
from skinlesion.data.metadata import FIELDS, check_metadata, encode_metadata
from skinlesion.errors import DataError
from skinlesion.model.info import ModelInfo
from skinlesion.model.unknown import unknown_scores

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


@functools.cache
def _zip(archive: Path) -> zipfile.ZipFile:
    return zipfile.ZipFile(archive)


def expand_inputs(paths: list[Path]) -> list[Path | ZipMember]:
    """The images to predict: a file as given, then the images of a folder and of a zip archive
    (by suffix, sorted by name). A folder or archive without images is a DataError."""
    images: list[Path | ZipMember] = []
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


def read_images(paths: list[Path | ZipMember], info: ModelInfo) -> tuple[list[np.ndarray | None], list[str]]:
    """Decoded (size, size, 3) uint8 images, None where a file failed, and the error messages."""
    decode = functools.partial(
        load_image,
        size=info.image_size,
        crop_border=info.crop_border,
        color_constancy=info.color_constancy,
    )
    openers = [path.open if isinstance(path, ZipMember) else functools.partial(open, path, "rb") for path in paths]
    results = [decode_or_reason(opener, decode) for opener in openers]
    return [pixels for pixels, _ in results], [reason for _, reason in results]


class Classifier(Protocol):
    """A model ready to predict: skinlesion.model.classifier.TorchClassifier (a model file of
    torch) or skinlesion.export.runtime.OnnxClassifier (an exported one, through ONNX Runtime)."""

    info: ModelInfo

    def __call__(self, images: list[np.ndarray], names: list[str], metadata: np.ndarray | None) -> np.ndarray:
        """Class probabilities (N, C) of (H, W, 3) uint8 `images` (named `names`), with
        encode_metadata's (N, F) `metadata` for a model that fuses it."""
        ...


def predict_batches(
    classify: Classifier,
    paths: list[Path | ZipMember],
    *,
    batch_size: int = 32,
    metadata: pd.DataFrame | None = None,
) -> Iterator[list[dict]]:
    """The results of `paths`, one list per batch of `batch_size` files, in order. A result is
    {"image": name, "probabilities": (C,) array in the model's class order} or, for a file
    that could not be read, {"image": name, "error": why}; with `metadata` (for a model that
    fuses it: one row per path, columns FIELDS, checked) also the row it was given."""
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        images, errors = read_images(chunk, classify.info)
        readable = [i for i, image in enumerate(images) if image is not None]
        given = None if metadata is None else metadata.iloc[start : start + batch_size].reset_index(drop=True)
        inputs = None if given is None else encode_metadata(given.iloc[readable], "metadata")
        kept, names = [images[i] for i in readable], [str(chunk[i]) for i in readable]
        rows = iter(classify(kept, names, inputs) if kept else [])
        results = []
        for index, (path, error) in enumerate(zip(chunk, errors)):
            if error:
                result = {"image": str(path), "error": error}
            else:
                result = {"image": str(path), "probabilities": next(rows)}
            if given is not None and not error:
                result["metadata"] = given.iloc[index].to_dict()
            results.append(result)
        yield results


def top_classes(probabilities: np.ndarray, classes: tuple[str, ...], top: int) -> list[dict]:
    """The `top` most probable classes of one image, most probable first, rounded to 4 places."""
    order = np.argsort(-probabilities)[:top]
    return [{"class": classes[k], "probability": round(float(probabilities[k]), 4)} for k in order]


def check_submission(info: ModelInfo, model_path: Path) -> None:
    """Raise DataError, naming `model_path`, unless its model can write a submission (run before predicting)."""
    if info.unknown_threshold is None:
        raise DataError(
            f"{model_path}: the model file has no unknown threshold (it predates it): retrain it to write a submission"
        )
    if sorted(info.classes) != sorted(CLASSES):
        raise DataError(
            f"{model_path}: a submission needs the classes {list(CLASSES)}; the model predicts {list(info.classes)}"
        )


def submission_row(result: dict, info: ModelInfo) -> dict | None:
    """The ISIC 2019 submission row of one result (None for a file that could not be read):
    the image named after its file without extension, the model's probabilities in the
    official class order, and UNK = min(1, t^2 / m), with m the top class probability and
    t = 1 - the model's unknown threshold: it is the row's largest value exactly when the
    unknown score calls the image unknown, and it ranks images as the score does."""
    if "probabilities" not in result:
        return None
    probabilities = dict(zip(info.classes, result["probabilities"]))
    known = 1.0 - info.unknown_threshold
    unknown = min(1.0, known**2 / float(result["probabilities"].max()))
    row = {"image": _stem(result["image"])} | {name: round(float(probabilities[name]), 6) for name in CLASSES}
    return row | {"UNK": round(unknown, 6)}


def results_row(result: dict, info: ModelInfo) -> dict:
    """One result as a row of the results table (CSV columns or a JSON line): the image, the
    predicted class, every class's probability, the unknown score, and the error if any."""
    if "probabilities" not in result:
        return {"image": result["image"], "error": result["error"]}
    probabilities = result["probabilities"]
    row = {"image": result["image"], "predicted": info.classes[int(probabilities.argmax())]}
    row |= {f"p_{name}": round(float(p), 6) for name, p in zip(info.classes, probabilities)}
    row["unknown_score"] = round(float(unknown_scores(probabilities[None])[0]), 6)
    return row


def _stem(name: str) -> str:
    """A submission row's image: the file name without extension (of a zip member too)."""
    return Path(name).stem


class OutputFile:
    """A file of one row per image, written as results arrive and continued by a rerun.

    Rows go to `<path>.partial`, flushed after every batch; finish() renames it to `path` once
    every image has its row (its probabilities, or in the results table why it could not be
    read), so a file at `path` is complete. A rerun with the same output finds the images
    already written (in the partial file, or the complete one) and skips them; a last line cut
    short by an interruption is dropped first. `run` describes what the rows depend on (the
    model file, the TTA, the metadata): kept beside the partial file, a rerun with another is
    refused, so rows of two models never mix. Rows are dicts with an "image"; format by
    suffix: `.csv` (`columns` as its header) or `.jsonl` (one JSON object a line); `key` turns
    an input's name into its row's "image". Nothing is moved or written before append()."""

    def __init__(self, path: Path, columns: list[str], run: dict, key: Callable[[str], str] = str):
        if path.suffix.lower() not in (".csv", ".jsonl"):
            raise DataError(f"{path}: write results as .csv or .jsonl (JSON lines)")
        self.path, self.columns, self.run, self.key = path, columns, run, key
        self.partial = path.with_name(path.name + ".partial")
        self.run_file = path.with_name(path.name + ".partial.run.json")
        self.csv = path.suffix.lower() == ".csv"
        self._check_run()
        self.done = self._read_done()

    def _check_run(self) -> None:
        if not (self.partial.exists() and self.run_file.exists()):
            return
        before = json.loads(self.run_file.read_text(encoding="utf-8"))
        changed = [
            f"{key}: {before.get(key)!r} then, {value!r} now"
            for key, value in self.run.items()
            if before.get(key) != value
        ]
        if changed:
            raise DataError(
                f"{self.partial}: the unfinished output of another run ({'; '.join(changed)}): rerun as it was, "
                "or move the file away"
            )

    def _read_done(self) -> set[str]:
        """The images already written, in the partial file or else the complete one."""
        source = self.partial if self.partial.exists() else self.path
        if not source.exists():
            return set()
        data = source.read_bytes()
        if data and not data.endswith(b"\n"):  # cut short mid-line: that row is written again
            data = data[: data.rfind(b"\n") + 1]
            os.truncate(source, len(data))
        lines = data.decode("utf-8").splitlines()
        if self.csv:
            if lines and lines[0] != ",".join(self.columns):
                raise DataError(f"{source}: not the header {','.join(self.columns)}: move the file away")
            return {row["image"] for row in csv.DictReader(lines)}
        try:
            return {json.loads(line)["image"] for line in lines}
        except (json.JSONDecodeError, TypeError, KeyError) as error:
            raise DataError(f"{source}: not JSON lines of results ({error}): move the file away") from None

    def has(self, image: str) -> bool:
        return self.key(image) in self.done

    def append(self, rows: list[dict]) -> None:
        """Write the rows of images not yet in the file (a CSV's in `columns` order, blank where
        a row lacks one), and flush. The first call takes a complete file back as the partial
        one, so that only the images it lacks (of new inputs) are added."""
        if not self.partial.exists():
            if self.path.exists():
                os.replace(self.path, self.partial)
            self.run_file.write_text(json.dumps(self.run), encoding="utf-8")
        new = not self.partial.exists() or self.partial.stat().st_size == 0
        with open(self.partial, "a", encoding="utf-8", newline="") as file:
            if self.csv and new:
                file.write(",".join(self.columns) + "\n")
            writer = csv.writer(file, lineterminator="\n")
            for row in rows:
                if row["image"] in self.done:
                    continue
                if self.csv:
                    writer.writerow([row.get(column, "") for column in self.columns])
                else:
                    file.write(json.dumps(row) + "\n")
                self.done.add(row["image"])

    def finish(self) -> int:
        """Give the file its name: every image is in it. Returns the number of rows."""
        self.append([])
        os.replace(self.partial, self.path)
        self.run_file.unlink(missing_ok=True)
        return len(self.done)


def run_description(model_path: Path, tta: str, metadata: str | None) -> dict:
    """What a prediction's rows depend on, for OutputFile: the model file's content (sha256),
    the TTA and where the metadata came from."""
    digest = hashlib.sha256()
    with open(model_path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return {"model_sha256": digest.hexdigest(), "tta": tta, "metadata": metadata}


def submission_file(path: Path, run: dict) -> OutputFile:
    """The ISIC 2019 submission CSV (header GROUND_TRUTH_COLUMNS), a row per image named after its file."""
    if path.suffix.lower() != ".csv":
        raise DataError(f"{path}: the ISIC 2019 submission is a .csv file")
    return OutputFile(path, list(GROUND_TRUTH_COLUMNS), run, key=_stem)


def results_file(path: Path, info: ModelInfo, run: dict) -> OutputFile:
    """The results table: CSV (image, predicted, p_<class>..., unknown_score, error) or JSON lines."""
    columns = ["image", "predicted", *(f"p_{name}" for name in info.classes), "unknown_score", "error"]
    return OutputFile(path, columns, run)


def image_metadata(
    paths: list[Path | ZipMember],
    info: ModelInfo,
    *,
    table_path: Path | None = None,
    values: dict[str, str] | None = None,
    model_path: Path,
) -> pd.DataFrame | None:
    """The metadata of each of `paths` for the model, checked, one row per path (empty where
    missing), from the metadata CSV `table_path` or the same `values` (age_approx, sex,
    anatom_site_general) for every image; None when the model takes none. Warns about every
    image whose metadata is missing entirely."""
    given = {field: value for field, value in (values or {}).items() if value is not None}
    if table_path and given:
        raise DataError("--metadata and --age/--sex/--site: give a metadata file or values for every image, not both")
    if not info.uses_metadata:
        if table_path or given:
            log.warning("%s: the model takes no metadata; --metadata/--age/--sex/--site are ignored", model_path)
        return None
    empty = dict.fromkeys(FIELDS, "")
    if given:
        row = check_metadata(pd.DataFrame([{**empty, **given}]), "--age/--sex/--site").iloc[0].to_dict()
        return pd.DataFrame([row] * len(paths))
    if not table_path:
        log.warning(
            "%s: the model takes age, sex and anatomical site, and none were given (--metadata CSV or "
            "--age/--sex/--site): all treated as missing, which lowers its accuracy",
            model_path,
        )
        return pd.DataFrame([empty] * len(paths))
    table = pd.read_csv(table_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    if "image" not in table.columns:
        raise DataError(f"{table_path}: no column 'image' (found {list(table.columns)})")
    table = check_metadata(table, str(table_path)).set_index(table["image"].str.strip())
    names = [path.stem for path in paths]
    absent = [name for name in names if name not in table.index]
    if absent:
        log.warning(
            "%s: no row for %d of the images (%s%s): their metadata is treated as missing",
            table_path,
            len(absent),
            ", ".join(absent[:3]),
            ", ..." if len(absent) > 3 else "",
        )
    return pd.DataFrame([table.loc[name].to_dict() if name in table.index else empty for name in names])
