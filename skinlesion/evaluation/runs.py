"""Where `skinlesion compare` finds a run's predictions: a folder holding eval/ (the workspace is
`.`), a git revision, or an experiment as `dvc exp show` names it, or a glob of experiment
names and folders. The test split's predictions are eval/predictions.csv; an external set's,
eval/external/<name>/predictions.csv. DVC lists the experiments; their files are read with git
itself: evaluate's predictions are kept in git (cache: false in dvc.yaml), so no DVC cache is
needed.
A run's params.yaml, where it has one, says what differs between the runs compared.
"""

from __future__ import annotations

import fnmatch
import functools
import io
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from skinlesion.config import flatten
from skinlesion.errors import DataError
from skinlesion.evaluation.compare import Run, compare

TEST = "test"
PARAMS = "params.yaml"
# the key that tells the runs of one setting apart
SEED = "training.seed"
ABSENT = "(absent)"
PREDICTIONS = {TEST: "eval/predictions.csv"}
EXTERNAL = "eval/external"


def _git(repo: Path, *args: str) -> str | None:
    """git's output, or None when it fails (not a repository, no such revision or file)."""
    try:
        result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    return result.stdout if result.returncode == 0 else None


def experiments(repo: Path) -> dict[str, str]:
    """DVC's experiments in `repo`, by name: their commits, as `dvc exp list --all-commits`
    lists them (DVC's API, which keeps working when DVC changes how it stores them). A name that
    experiments of several baselines share maps to "" (ambiguous: name it by its commit). Empty
    outside a DVC repository."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        with Repo(str(repo)) as dvc:
            listed = dvc.experiments.ls(all_commits=True)
    except NotDvcRepoError:
        return {}
    found: dict[str, str] = {}
    for name, commit in (run for runs in listed.values() for run in runs):
        if commit:  # a queued experiment has none yet
            found[name] = commit if found.get(name, commit) == commit else ""
    return found


class Source:
    """One run: `name` as the user gave it, and how to read a file of it (None if absent)."""

    def __init__(self, name: str, read: Callable[[str], str | None], files: Callable[[str], list[str]]):
        self.name, self._read, self._files = name, read, files

    @functools.cached_property
    def sets(self) -> list[str]:
        """The image sets it has predictions for: the test split, then external sets by name
        (from one listing of its eval/, not by reading the files)."""
        listed = set(self._files("eval"))
        found = [TEST] if PREDICTIONS[TEST] in listed else []
        external = sorted(
            path.split("/")[2] for path in listed if re.fullmatch(rf"{EXTERNAL}/[^/]+/predictions.csv", path)
        )
        return found + external

    @functools.cached_property
    def params(self) -> dict[str, Any] | None:
        """Its params.yaml by dotted key, or None where it has none (a folder of predictions
        only). Read as plain YAML, unchecked: an older revision's params need not fit today's
        schema, and only what differs is shown."""
        text = self._read(PARAMS)
        try:
            tree = yaml.safe_load(text) if text is not None else None
        except yaml.YAMLError:
            return None
        return flatten(tree) if isinstance(tree, dict) else None

    def run(self, image_set: str) -> Run:
        path = PREDICTIONS.get(image_set, f"{EXTERNAL}/{image_set}/predictions.csv")
        text = self._read(path)
        if text is None:
            raise DataError(f"{self.name}: no {path}")
        try:
            table = pd.read_csv(io.StringIO(text), dtype={"image": str, "label": str, "lesion": str})
        except (pd.errors.ParserError, ValueError) as error:
            raise DataError(f"{self.name}: {path} is not a predictions table ({error})") from None
        return Run(self.name, table)


def resolve(names: list[str], repo: Path) -> list[Source]:
    """The sources of `names`, a glob expanded to the experiments and folders it matches."""
    known = experiments(repo)
    sources = []
    for name in names:
        if any(char in name for char in "*?["):
            # folders as paths inside repo, as a name given whole is (_source joins repo on)
            matched = sorted(fnmatch.filter(known, name)) + sorted(
                path.relative_to(repo).as_posix() for path in repo.glob(name) if (path / "eval").is_dir()
            )
            if not matched:
                raise DataError(f"{name}: matches no experiment (dvc exp show) and no folder with eval/")
            sources += [_source(match, repo, known) for match in matched]
        else:
            sources.append(_source(name, repo, known))
    names = [source.name for source in sources]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise DataError(f"{', '.join(twice)}: named twice on one side (a run counts once)")
    return sources


def _source(name: str, repo: Path, known: dict[str, str]) -> Source:
    folder = repo / name
    if (folder / "eval").is_dir():

        def read(path: str) -> str | None:
            file = folder / path
            return file.read_text(encoding="utf-8") if file.is_file() else None

        def files(under: str) -> list[str]:
            return [str(path.relative_to(folder)) for path in (folder / under).rglob("*") if path.is_file()]

        return Source(name, read, files)
    if known.get(name) == "":
        raise DataError(f"{name}: experiments of several baselines have this name; give the commit instead")
    commit = known.get(name) or (_git(repo, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}") or "").strip()
    if not commit:
        raise DataError(
            f"{name}: no folder with eval/, git revision or experiment of that name in {repo} "
            "(dvc exp show lists the experiments)"
        )
    return Source(
        name,
        lambda path: _git(repo, "show", f"{commit}:{path}"),
        lambda under: (_git(repo, "ls-tree", "-r", "--name-only", commit, "--", under) or "").splitlines(),
    )


def compare_sources(a: list[Source], b: list[Source], *, resamples: int, seed: int) -> dict[str, dict]:
    """compare.compare of B against A on every image set that all of them were scored on (the
    test split first), by set name; a DataError when they share none."""
    common = [name for name in a[0].sets if all(name in source.sets for source in a + b)]
    if not common:
        listed = "; ".join(f"{source.name}: {source.sets or 'none'}" for source in a + b)
        raise DataError(f"no image set with predictions in every run ({listed})")
    return {
        name: compare(
            [source.run(name) for source in a], [source.run(name) for source in b], resamples=resamples, seed=seed
        )
        for name in common
    }


def params_differences(a: list[Source], b: list[Source]) -> dict | None:
    """What differs in params.yaml between the runs of two sides, each value as JSON text:
    `between`, each key whose values on A and on B differ ({key: [A's values, B's values]});
    `within`, per side, each key besides training.seed that its runs differ in (a side meant
    as seeds of one setting that is not one); `unknown`, the runs without params.yaml. None
    when no run has params (folders of predictions only)."""
    known = [source for source in a + b if source.params is not None]
    if not known:
        return None

    def values(side: list[Source], key: str) -> list[str]:
        shown = [
            json.dumps(source.params[key]) if key in source.params else ABSENT
            for source in side
            if source.params is not None
        ]
        return sorted(set(shown), key=shown.index)

    keys = sorted({key for source in known for key in source.params})
    sides = {"a": a, "b": b}
    between = {}
    for key in keys:
        on_a, on_b = values(a, key), values(b, key)
        if on_a and on_b and set(on_a) != set(on_b):
            between[key] = [on_a, on_b]
    within = {
        side: {key: shown for key in keys if key != SEED and len(shown := values(runs, key)) > 1}
        for side, runs in sides.items()
    }
    unknown = [source.name for source in a + b if source.params is None]
    return {"between": between, "within": within, "unknown": unknown}
