"""The whole of params.yaml in one schema: for editors (params.schema.json) and for checking a
profile before a run. No stage imports this module: each reads only its own sections."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field

from skinlesion.config import Section, load_params
from skinlesion.data.assign_folds import CvParams
from skinlesion.data.prepare import PrepareParams
from skinlesion.data.synthetic import SampleParams
from skinlesion.evaluation.params import EvaluateParams, GradcamParams
from skinlesion.model.params import ModelParams
from skinlesion.resampling.params import SamplingParams
from skinlesion.training.params import TrainingParams
from skinlesion.transforms.params import AugmentationParams


class DataParams(Section):
    root: str = Field(
        description="folder with the ISIC 2019 CSVs and ISIC_2019_Training_Input/ or its zip; may be absolute"
    )


class ParamsFile(Section):
    """params.yaml: one section per concern; dvc.yaml lists, per stage, the keys it reads."""

    data: DataParams
    sample: SampleParams
    prepare: PrepareParams
    cv: CvParams
    sampling: SamplingParams
    augmentation: AugmentationParams
    model: ModelParams
    training: TrainingParams
    evaluate: EvaluateParams
    gradcam: GradcamParams


def params_schema() -> dict:
    """The JSON schema of params.yaml (draft 2020-12), as editors' YAML support reads it."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **ParamsFile.model_json_schema()}


def write_params_schema(path: Path) -> None:
    path.write_text(json.dumps(params_schema(), indent=2) + "\n", encoding="utf-8")


def check_params_file(path: Path) -> ParamsFile:
    """Every section of a params file checked at once (a stage checks only what it reads)."""
    return load_params(ParamsFile, path)
