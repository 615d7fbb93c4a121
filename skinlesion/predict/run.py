"""A prediction run: plan() finds the images (and, for a run that was interrupted, which of
them remain: those not yet in every output file), predict() classifies those batch by batch,
writes each batch's rows to the output files and yields its results, so memory does not grow
with the number of images. Messages name the parameters (device, cam_dir, metadata_file,
metadata_values), never the command's flags."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from skinlesion.data.metadata import encode_metadata
from skinlesion.errors import DataError
from skinlesion.model.info import TTA, ModelInfo
from skinlesion.predict.inputs import ImageSource, expand_inputs, image_metadata, read_images
from skinlesion.predict.outputs import OutputFile, check_submission, results_file, run_description, submission_file
from skinlesion.predict.records import Failure, Prediction, Result

log = logging.getLogger(__name__)


class Classifier(Protocol):
    """A model ready to predict: skinlesion.predict.torch_classifier.TorchClassifier (a model
    file, through torch) or skinlesion.predict.onnx_classifier.OnnxClassifier (its export,
    through ONNX Runtime)."""

    info: ModelInfo
    tta: TTA

    def __call__(self, images: list[np.ndarray], names: list[str], metadata: np.ndarray | None) -> np.ndarray:
        """Class probabilities (N, C) of (H, W, 3) uint8 `images` (named `names`), with
        encode_metadata's (N, F) `metadata` for a model that fuses it."""
        ...

    def probabilities(self, batch: np.ndarray, metadata: np.ndarray | None) -> np.ndarray:
        """Class probabilities (N, C) of images already normalised, float32 (N, 3, S, S)."""
        ...


def load_classifier(
    model_path: Path,
    *,
    device: str = "auto",
    tta: TTA = "none",
    cam_dir: Path | None = None,
) -> Classifier:
    """The Classifier of `model_path`: an exported .onnx file through ONNX Runtime (torch is
    not imported), else a model file through torch, which with `cam_dir` also saves Grad-CAM
    overlays there."""
    if model_path.suffix.lower() == ".onnx":
        from skinlesion.predict.onnx_classifier import OnnxClassifier

        if cam_dir:
            raise DataError(f"cam_dir: Grad-CAM needs the model file of torch, not the exported {model_path}")
        return OnnxClassifier(model_path, device=device, tta=tta)
    from skinlesion.predict.torch_classifier import TorchClassifier

    return TorchClassifier.load(model_path, device=device, tta=tta, cam_dir=cam_dir)


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Plan:
    """A run ready to predict: `classify` takes the `remaining` images (in input order; all of
    `images`, less those every output file already has), with `metadata` (one row each, for
    a model that fuses it), and their rows go to `outputs`."""

    classify: Classifier
    images: tuple[ImageSource, ...]
    remaining: tuple[ImageSource, ...]
    metadata: pd.DataFrame | None
    outputs: tuple[OutputFile, ...]


def plan(
    classify: Classifier,
    inputs: list[Path],
    *,
    model_path: Path,
    metadata_file: Path | None = None,
    metadata_values: Mapping[str, str | None] | None = None,
    results_path: Path | None = None,
    submission_path: Path | None = None,
) -> Plan:
    """The run of `classify` (loaded from `model_path`) on the images of `inputs` (files,
    folders, zip archives), writing the results table `results_path` (.csv or .jsonl) and the
    ISIC 2019 submission `submission_path` if given. Images already in every output file (of
    an interrupted run with the same model, TTA and metadata) are not predicted again; an
    unfinished output of another run is a DataError. Metadata: image_metadata's."""
    info = classify.info
    images = expand_inputs(inputs)
    outputs = []
    if results_path or submission_path:
        source = _metadata_source(metadata_file, metadata_values) if info.uses_metadata else None
        run = run_description(model_path, classify.tta, source)
    if submission_path:
        check_submission(info, model_path)
        outputs.append(submission_file(submission_path, info, run))
    if results_path:
        outputs.append(results_file(results_path, info, run))
    remaining = [image for image in images if not outputs or not all(out.has(str(image)) for out in outputs)]
    if len(remaining) < len(images):
        log.info(
            "%d of %d images are already in %s: predicting the other %d",
            len(images) - len(remaining),
            len(images),
            " and ".join(str(out.path) for out in outputs),
            len(remaining),
        )
    metadata = image_metadata(
        remaining,
        info,
        metadata_file=metadata_file,
        metadata_values=metadata_values,
        model_path=model_path,
    )
    return Plan(
        classify=classify,
        images=tuple(images),
        remaining=tuple(remaining),
        metadata=metadata,
        outputs=tuple(outputs),
    )


def _metadata_source(metadata_file: Path | None, metadata_values: Mapping[str, str | None] | None) -> str:
    """Where the metadata comes from, for the run description: the file, or the values given."""
    if metadata_file:
        return str(metadata_file)
    return json.dumps({field: value for field, value in (metadata_values or {}).items() if value})


def predict(plan: Plan, *, batch_size: int = 32) -> Iterator[list[Result]]:
    """The results of `plan.remaining`, one list per batch of `batch_size` images, in order,
    each batch's rows written to the output files before it is yielded; once every batch is,
    the output files get their names."""
    batches = classify_batches(plan.classify, list(plan.remaining), batch_size=batch_size, metadata=plan.metadata)
    for results in batches:
        for output in plan.outputs:
            output.write(results)
        yield results
    for output in plan.outputs:
        log.info("wrote %d rows to %s", output.finish(), output.path)


def classify_batches(
    classify: Classifier,
    paths: list[ImageSource],
    *,
    batch_size: int = 32,
    metadata: pd.DataFrame | None = None,
) -> Iterator[list[Result]]:
    """The results of `paths`, one list per batch of `batch_size` files, in order: a Prediction
    per image read (with `metadata`, for a model that fuses it: one row per path, columns
    FIELDS, checked, also the row it was given), a Failure per file that could not be."""
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        images, errors = read_images(chunk, classify.info)
        readable = [i for i, image in enumerate(images) if image is not None]
        given = None if metadata is None else metadata.iloc[start : start + batch_size].reset_index(drop=True)
        inputs = None if given is None else encode_metadata(given.iloc[readable], "metadata")
        kept, names = [images[i] for i in readable], [str(chunk[i]) for i in readable]
        rows = iter(classify(kept, names, inputs) if kept else [])
        results: list[Result] = []
        for index, (path, error) in enumerate(zip(chunk, errors)):
            if error:
                results.append(Failure(image=str(path), error=error))
                continue
            row = None if given is None else given.iloc[index].to_dict()
            results.append(Prediction.of(str(path), next(rows), classify.info, row))
        yield results
