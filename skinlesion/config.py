"""The one loader of params.yaml: each stage reads the sections it uses, typed, frozen and
checked before any work starts.

A section's schema is a pydantic model that lives beside the code it configures, so only the
stages that read the section depend on it (a new training option does not make DVC think
prepare-split changed). A stage names what it reads in one model whose fields are sections
(`load_params(TrainRun)`); the file's other sections belong to other stages and are not read.
An unknown key, a missing key or a bad value raises :class:`ParamsError` naming the dotted key
and, for a misspelling, the nearest valid one.
"""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from skinlesion.files import read_yaml

Schema = TypeVar("Schema", bound=BaseModel)


class ParamsError(ValueError):
    """A params.yaml key is unknown, missing or has a bad value."""


class Section(BaseModel):
    """A section of params.yaml that one stage owns: every key required, unknown keys refused.

    Strict: no value is coerced ("5" is not an integer, 1 is not true). A check of several
    keys raises ValueError("KEY: message") so that the error names the key.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class View(BaseModel):
    """Some keys of a section (or the sections of the file) that a stage reads; the stage that
    owns the section checks the rest, so other keys are ignored here."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


def _tuples(value: Any) -> Any:
    """YAML lists as tuples, which strict validation wants for the frozen tuple fields."""
    if isinstance(value, dict):
        return {key: _tuples(item) for key, item in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value


def _model_at(schema: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The model that holds the key at `path` inside `schema`, if any."""
    model = schema
    for part in path:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _suggestion(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {choices}"


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"training": {"epochs": 50}} -> {"training.epochs": 50}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def apply_profile(params: dict, profile: dict, name: str) -> dict:
    """`params` with the keys of `profile` replaced; a key params.yaml lacks is an error that
    names the nearest key it has."""
    merged = copy.deepcopy(params)
    for key, value in flatten(profile).items():
        *sections, leaf = key.split(".")
        node = merged
        for depth, part in enumerate([*sections, leaf]):
            if not isinstance(node, dict) or part not in node:
                hint = _suggestion(part, list(node)) if isinstance(node, dict) else ""
                raise ParamsError(f"profile {name}: {key} is not a key of params.yaml{hint}")
            if depth < len(sections):
                node = node[part]
        node[leaf] = value
    return merged


_FIELD_PREFIX = re.compile(r"^(\w+): (.*)$", re.S)
# keys that once were params, and what took their place
_REMOVED = {
    ("model", "num_classes"): "removed: the classes are the ground truth's columns (docs/own-data.md); delete it",
}


def _describe(error: dict, schema: type[BaseModel], mapping: dict) -> str:
    """One pydantic error as `params: dotted.key: what is wrong`."""
    loc = tuple(error["loc"])
    kind, value = error["type"], error.get("input")
    message = error["msg"].removeprefix("Value error, ")
    if kind == "value_error":  # the project's own check: its message says what it got
        match = _FIELD_PREFIX.match(message)
        model = _model_at(schema, loc) if match else None
        if model and match.group(1) in model.model_fields:  # a check of several keys names its key
            loc, message = (*loc, match.group(1)), match.group(2)
    elif kind == "extra_forbidden":
        model = _model_at(schema, loc[:-1])
        message = _REMOVED.get(loc) or "unknown key" + _suggestion(
            str(loc[-1]), list(model.model_fields) if model else []
        )
    elif kind == "missing":
        message = "missing"
        if len(loc) == 1:  # a whole section: perhaps misspelled in the file
            others = [str(key) for key in mapping if str(key) not in schema.model_fields]
            close = difflib.get_close_matches(str(loc[0]), others, n=1)
            message += f" (found {close[0]!r}: a misspelling?)" if close else ""
    elif kind == "literal_error":
        message = f"unknown value {value!r}; choose one of {message.removeprefix('Input should be ')}"
    else:
        message = f"{message.replace('Input should be', 'must be')}, got {value!r}"
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    return f"params: {key or 'params.yaml'}: {message}"


def parse_params(schema: type[Schema], mapping: Any) -> Schema:
    """Validate a parsed params.yaml mapping against `schema`; raise ParamsError naming the key."""
    if not isinstance(mapping, dict):
        raise ParamsError(f"params: params.yaml must be a mapping of sections, got {mapping!r}")
    try:
        return schema.model_validate(_tuples(mapping))
    except ValidationError as error:
        errors = error.errors()
        # a misspelt key also leaves the right one missing: name the misspelling, with the hint
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        raise ParamsError(_describe(first, schema, mapping)) from None


def load_params(schema: type[Schema], path: str | Path = "params.yaml") -> Schema:
    """Read the sections of params.yaml that `schema` names and check them (a file that is
    missing or not a YAML mapping is a DataError naming it)."""
    return parse_params(schema, read_yaml(path))
