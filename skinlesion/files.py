"""Reading the project's YAML and JSON files: a file that is missing, unreadable or does not
parse is a DataError naming it, reported as one line (skinlesion.entry), not a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from skinlesion.errors import DataError

# what to do about a missing file: the repository's own files (params.yaml, profiles, dvc.yaml)
# are read from its root; a JSON file is a stage's output
IN_REPOSITORY = "run from the repository root"
STAGE_OUTPUT = "run dvc repro: an earlier stage writes it"


def read_text(path: str | Path, *, missing: str) -> str:
    """The UTF-8 text of `path`; a DataError names the file when it is missing (saying `missing`:
    what to do) or cannot be read as text."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: not found ({missing})") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error})") from None
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror})") from None


def read_yaml(path: str | Path, *, missing: str = IN_REPOSITORY) -> dict:
    """The mapping in the YAML file `path` (an empty file: an empty mapping); a DataError names
    the file when it is missing, unreadable, not YAML or not a mapping."""
    try:
        data = yaml.safe_load(read_text(path, missing=missing))
    except yaml.YAMLError as error:
        raise DataError(f"{path}: not valid YAML ({error})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping, got {type(data).__name__}")
    return data


def read_json(path: str | Path, *, missing: str = STAGE_OUTPUT) -> Any:
    """The JSON in `path`; a DataError names the file when it is missing (an earlier stage
    writes it), unreadable or not JSON."""
    try:
        return json.loads(read_text(path, missing=missing))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error})") from None
