"""What the model card is built from, read from the pipeline's files: the model file's
description, eval.json, data.json, the test predictions and curves, the Grad-CAM overlays, the
reports of the external test sets, params.yaml and the recipe's profile (CardInputs). Each
reader names the file in a DataError when it is missing or malformed. The model-card stage's
params view is defined here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from skinlesion.config import ParamsError, View, apply_profile, parse_params
from skinlesion.data.prepare import PrepareParams
from skinlesion.errors import DataError
from skinlesion.evaluation.params import EvaluateParams
from skinlesion.evaluation.report_schema import EvalReport, ExternalReport
from skinlesion.files import read_json
from skinlesion.model.info import ModelInfo
from skinlesion.model.params import ModelParams
from skinlesion.resampling.params import SamplingParams
from skinlesion.training.params import TrainingParams
from skinlesion.transforms.params import AugmentationParams

# Grad-CAM overlays shown, the first by file name
GRADCAM_PANELS = 4


class DataRoot(View):
    """The key of `data` the card reads."""

    root: str


class FoldList(View):
    """The key of `cv` the card reads."""

    folds: tuple[int, ...]


class ModelCardRun(View):
    """The params the model-card stage reads: where the data came from, the folds, and the
    sections it compares with the recipe (whole, as any of their keys may differ)."""

    data: DataRoot
    cv: FoldList
    prepare: PrepareParams
    sampling: SamplingParams
    augmentation: AugmentationParams
    model: ModelParams
    training: TrainingParams
    evaluate: EvaluateParams


@dataclass(frozen=True)
class Curves:
    """evaluate's curves, as read from its folder."""

    roc: dict[str, pd.DataFrame]  # per class present in the test split: fpr, tpr
    reliability: pd.DataFrame  # per non-empty confidence bin: bin, confidence, accuracy, count


@dataclass(frozen=True)
class CardInputs:
    """Everything the card says, as read from the pipeline's files."""

    model_file: str  # the model's path, as the card names it
    model: ModelInfo
    evaluation: EvalReport  # metrics/eval.json
    data_counts: dict  # metrics/data.json: split -> class -> images, and `skipped`
    params: ModelCardRun
    recipe: ModelCardRun  # params.yaml with the recipe's profile applied (recipe_params)
    recipe_file: str  # the profile's path
    synthetic: bool  # data.root is the synthetic sample
    data_version: str | None  # DVC's md5 of data.root (data_version), None when not recorded
    predictions: pd.DataFrame  # evaluate's: image, label, predicted, p_<CLASS>
    curves: Curves
    gradcam: dict[str, bytes]  # overlay file name -> PNG bytes
    external: dict[str, ExternalReport]  # external set's name (evaluate.external) -> metrics/external/<name>.json


def read_json_keys(path: Path, required: tuple[str, ...]) -> dict:
    """The JSON object in `path`, which must hold the keys `required`."""
    data = read_json(path)
    missing = [key for key in required if not isinstance(data, dict) or key not in data]
    if missing:
        raise DataError(f"{path}: missing {missing}")
    return data


def read_external(folder: Path, names: list[str]) -> dict[str, ExternalReport]:
    """evaluate-external's report of each external set `names` (evaluate.external's keys), from
    `folder` (metrics/external); a report of a set no longer named is not read."""
    reports = {}
    for name in names:
        path = folder / f"{name}.json"
        if not path.is_file():
            raise DataError(f"{path}: not found (run dvc repro: evaluate-external@{name} writes it)")
        reports[name] = ExternalReport.read(path)
    return reports


def read_predictions(path: Path, classes: list[str]) -> pd.DataFrame:
    """evaluate's predictions: one row per test image, label and predicted among `classes`,
    and a probability column p_<CLASS> per class."""
    try:
        predictions = pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"{path}: not found (run dvc repro: evaluate writes it)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a readable CSV ({error})") from None
    expected = ["label", "predicted", *(f"p_{name}" for name in classes)]
    missing = [column for column in expected if column not in predictions.columns]
    if missing or predictions.empty:
        raise DataError(f"{path}: expected rows with columns {expected}; missing {missing or 'every row'}")
    unknown = sorted((set(predictions["label"]) | set(predictions["predicted"])) - set(classes))
    if unknown:
        raise DataError(f"{path}: {unknown} are not classes of the model ({classes})")
    return predictions


def read_curves(folder: Path, classes: list[str]) -> Curves:
    """evaluate's curves: roc_<CLASS>.csv for each class that has one, and reliability.csv."""
    if not (folder / "reliability.csv").is_file():
        raise DataError(f"{folder / 'reliability.csv'}: not found (run dvc repro: evaluate writes it)")
    roc = {name: pd.read_csv(folder / f"roc_{name}.csv") for name in classes if (folder / f"roc_{name}.csv").is_file()}
    return Curves(roc, pd.read_csv(folder / "reliability.csv"))


def read_gradcam(folder: Path, panels: int = GRADCAM_PANELS) -> dict[str, bytes]:
    """The first `panels` Grad-CAM overlays of `folder` by file name: name -> PNG bytes."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not found (run dvc repro: the gradcam stage writes it)")
    return {path.name: path.read_bytes() for path in sorted(folder.glob("*.png"))[:panels]}


def data_version(lock: dict | None, root: str) -> str | None:
    """The md5 DVC recorded for the folder `root` as a dependency of prepare-split, from the
    parsed dvc.lock `lock`; None without one or without that entry."""
    deps = ((lock or {}).get("stages", {}).get("prepare-split") or {}).get("deps", [])
    return next((dep.get("md5") for dep in deps if dep.get("path") == root), None)


def recipe_params(params: ModelCardRun, profile: dict, where: str) -> ModelCardRun:
    """`params` with the recipe's profile (parsed from `where`) applied to the sections the card
    reads, as run-profile applies it to params.yaml, and checked; a key params.yaml lacks or a
    value that does not fit is a DataError naming the file."""
    merged = params.model_dump(mode="json")
    read = {section: values for section, values in profile.items() if section in merged}  # not sample, gradcam
    try:
        merged = apply_profile(merged, read, where)
    except ParamsError as error:  # it names the profile
        raise DataError(str(error)) from None
    try:
        return parse_params(ModelCardRun, merged)
    except ParamsError as error:
        raise DataError(f"{where}: {error}") from None
