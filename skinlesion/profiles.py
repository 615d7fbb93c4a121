"""Profiles: named sets of params, run as DVC experiments beside the sample run.

A profile (profiles/NAME.yaml) holds only the keys it changes from params.yaml.
`skinlesion run-profile NAME` checks params.yaml with the profile applied, then runs

    dvc exp run --temp --name NAME -S key=value ...

so the experiment shows in `dvc exp show` beside the workspace's run, and params.yaml and the
workspace stay as they are (`--queue`, or other `dvc exp run` options, may be added).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from skinlesion.config import apply_profile, flatten, parse_params
from skinlesion.files import read_yaml
from skinlesion.schema import ParamsFile

PROFILES = Path("profiles")


def exp_run_command(name: str, profile: dict, extra: list[str]) -> list[str]:
    """The `dvc exp run` command of a profile: one -S per key (numbers, booleans and lists as
    JSON). A value that is a relative path out of the repository (`data.root=../data`) is made
    absolute: `--temp` and `--queue` run the experiment in a copy of the workspace under
    .dvc/tmp, where ../data names another folder."""
    sets = [
        f"{key}={json.dumps(value) if not isinstance(value, str) else value}" for key, value in flatten(profile).items()
    ]
    where = [] if {"--queue", "--temp"} & set(extra) else ["--temp"]
    extra = [_outside_path_absolute(arg) if _sets_a_param(extra, n) else arg for n, arg in enumerate(extra)]
    return [
        *(sys.executable, "-m", "dvc", "exp", "run", *where, "--name", name),
        *(_outside_path_absolute(f"-S{setting}") for setting in sets),
        *extra,
    ]


def _sets_a_param(args: list[str], n: int) -> bool:
    """Whether args[n] is a `key=value` of dvc exp run's -S / --set-param (either form)."""
    return args[n].startswith("-S") or (n > 0 and args[n - 1] in ("-S", "--set-param"))


def _outside_path_absolute(setting: str) -> str:
    """`[-S]key=value` with a value of the form ../PATH made absolute (from the repository root)."""
    head, sep, value = setting.partition("=")
    if sep and (value == ".." or value.startswith(("../", f"..{os.sep}"))):
        return f"{head}={os.path.abspath(value)}"
    return setting


def profile_path(name: str) -> Path:
    """A profile's file: NAME is profiles/NAME.yaml; a name ending in .yaml is the file itself."""
    return Path(name) if name.endswith((".yaml", ".yml")) else PROFILES / f"{name}.yaml"


def is_profile(path: Path) -> bool:
    """A file in a folder named profiles/ holds only the keys it changes: check it applied onto params.yaml."""
    return path.resolve().parent.name == PROFILES.name


def check_profile(path: Path, params_path: Path = Path("params.yaml")) -> ParamsFile:
    """params.yaml with the profile at `path` applied, checked as run-profile checks it."""
    return parse_params(ParamsFile, apply_profile(read_yaml(params_path), read_yaml(path), path.stem))


def run_profile(name: str, extra: list[str], params_path: Path = Path("params.yaml")) -> int:
    """Check params.yaml with profile `name` applied, then run it as an experiment."""
    path = profile_path(name)
    check_profile(path, params_path)
    return subprocess.run(exp_run_command(path.stem, read_yaml(path), extra)).returncode
