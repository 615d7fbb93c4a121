"""The files predict writes as results come, each continued by a rerun (OutputFile): the
results table (CSV or JSON lines) and the ISIC 2019 submission CSV."""

from __future__ import annotations

import csv
import functools
import json
import os
from collections.abc import Callable
from pathlib import Path

from skinlesion.classes import CLASSES
from skinlesion.data.isic import GROUND_TRUTH_COLUMNS
from skinlesion.digest import file_sha256
from skinlesion.errors import DataError
from skinlesion.model.info import ModelInfo
from skinlesion.predict.records import Failure, Prediction, Result, image_stem


class OutputFile:
    """A file of one row per image, written as results arrive and continued by a rerun.

    Rows go to `<path>.partial`, flushed after every batch; finish() renames it to `path` once
    every image has its row (its probabilities, or in the results table why it could not be
    read), so a file at `path` is complete. A rerun with the same output finds the images
    already written (in the partial file, or the complete one) and skips them; a last line cut
    short by an interruption is dropped first. `run` describes what the rows depend on (the
    model file, the TTA, the metadata): kept beside the partial file, a rerun with another is
    refused, so rows of two models never mix. `row` turns a result into its row, a dict with
    an "image" (None: the result has none); format by suffix: `.csv` (`columns` as its header)
    or `.jsonl` (one JSON object a line); `key` turns an input's name into its row's "image".
    Nothing is moved or written before write()."""

    def __init__(
        self,
        path: Path,
        columns: list[str],
        run: dict,
        *,
        row: Callable[[Result], dict | None],
        key: Callable[[str], str] = str,
    ):
        if path.suffix.lower() not in (".csv", ".jsonl"):
            raise DataError(f"{path}: write results as .csv or .jsonl (JSON lines)")
        self.path, self.columns, self.run, self.row, self.key = path, columns, run, row, key
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
        """Whether the input named `image` already has its row."""
        return self.key(image) in self.done

    def write(self, results: list[Result]) -> None:
        """Write the rows of `results` not yet in the file, and flush."""
        self._append([row for result in results if (row := self.row(result)) is not None])

    def _append(self, rows: list[dict]) -> None:
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
        self._append([])
        os.replace(self.partial, self.path)
        self.run_file.unlink(missing_ok=True)
        return len(self.done)


def run_description(model_path: Path, tta: str, metadata: str | None) -> dict:
    """What a prediction's rows depend on, for OutputFile: the model file's content (sha256),
    the TTA and where the metadata came from."""
    return {"model_sha256": file_sha256(model_path), "tta": tta, "metadata": metadata}


def results_row(result: Result) -> dict:
    """One result as a row of the results table (CSV columns or a JSON line): the image, the
    predicted class, every class's probability, the unknown score, or the error."""
    if isinstance(result, Failure):
        return {"image": result.image, "error": result.error}
    row = {"image": result.image, "predicted": result.predicted}
    row |= {f"p_{name}": round(p, 6) for name, p in result.probabilities.items()}
    return row | {"unknown_score": round(result.unknown_score, 6)}


def results_file(path: Path, info: ModelInfo, run: dict) -> OutputFile:
    """The results table: CSV (image, predicted, p_<class>..., unknown_score, error) or JSON lines."""
    columns = ["image", "predicted", *(f"p_{name}" for name in info.classes), "unknown_score", "error"]
    return OutputFile(path, columns, run, row=results_row)


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


def submission_row(result: Result, info: ModelInfo) -> dict | None:
    """The ISIC 2019 submission row of one result (None for a file that could not be read):
    the image named after its file without extension, the model's probabilities in the
    official class order, and UNK = min(1, t^2 / m), with m the top class probability and
    t = 1 - the model's unknown threshold: it is the row's largest value exactly when the
    unknown score calls the image unknown, and it ranks images as the score does."""
    if not isinstance(result, Prediction):
        return None
    known = 1.0 - info.unknown_threshold
    unknown = min(1.0, known**2 / max(result.probabilities.values()))
    row = {"image": result.stem} | {name: round(result.probabilities[name], 6) for name in CLASSES}
    return row | {"UNK": round(unknown, 6)}


def submission_file(path: Path, info: ModelInfo, run: dict) -> OutputFile:
    """The ISIC 2019 submission CSV (header GROUND_TRUTH_COLUMNS), a row per image named after
    its file; the model must pass check_submission."""
    if path.suffix.lower() != ".csv":
        raise DataError(f"{path}: the ISIC 2019 submission is a .csv file")
    row = functools.partial(submission_row, info=info)
    return OutputFile(path, list(GROUND_TRUTH_COLUMNS), run, row=row, key=image_stem)
