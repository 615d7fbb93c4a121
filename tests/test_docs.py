"""The README and the guide in docs/ stay true to the code: the generated references are
current, and every param key, repository path, `skinlesion` command and flag, and `python -m`
module they name exists. Cheap checks (seconds), no pipeline run."""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from skinlesion.cli import parser as skinlesion_parser
from skinlesion.schema import ParamsFile


def _load_generator():
    spec = importlib.util.spec_from_file_location("docs_reference", REPO / "tools" / "docs_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


docs_reference = _load_generator()

PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
SECTIONS = tuple(ParamsFile.model_fields)
PARAM_KEYS = {
    f"{section}.{key}" for section, field in ParamsFile.model_fields.items() for key in field.annotation.model_fields
}
# eval.json's keys that start like a params section (`model.temperature`): named in the docs as metrics
METRIC_KEYS = {".".join(key.split(".")[:2]) for key in docs_reference.eval_keys()}
# `model.pt`, `data.json`, `prepare.py`: file names, not keys
SUFFIXES = {"py", "pt", "json", "csv", "npy", "yaml", "yml", "md", "png", "tsv", "zip", "txt", "html", "lock", "dvc"}

# where a path the docs name must exist in the checkout
SOURCE_ROOTS = ("skinlesion/", "stages/", "tests/", "benchmarks/", "tools/", "docs/", "profiles/", ".dvc/", ".ci/")
TOP_FILES = (
    "README.md",
    "LICENSE",
    "dvc.yaml",
    "dvc.lock",
    "params.yaml",
    "params.schema.json",
    "pyproject.toml",
    "constraints.txt",
    "mkdocs.yml",
    ".gitignore",
)
# where it must be an output of dvc.yaml (or inside one): a fresh clone has none of them
PIPELINE_ROOTS = ("data/", "models/", "metrics/", "plots/", "eval/", "dvclive/")
# pipeline paths that are no output: the full profile's data root, import-isic --test's folder and
# skinlesion export's file (and folders dvc.yaml names in its vars, such as models/resume: unfinished training runs)
NOT_OUTPUTS = ("data/isic2019", "data/isic2019-test", "models/model.onnx")


def _text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def _name(page: Path) -> str:
    return str(page.relative_to(REPO))


def code_spans(text: str) -> list[str]:
    """The fenced code blocks (each a string, `\\` continuations joined) and the inline code of a page."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
    return [block.replace("\\\n", " ") for block in fenced] + re.findall(r"`([^`\n]+)`", prose)


def commands(text: str) -> list[str]:
    """Each line of code, cut at a comment or at a shell operator: one command each."""
    found = []
    for span in code_spans(text):
        for line in span.splitlines():
            found += [part.strip() for part in re.split(r"\s#\s|&&|\|\||;|\s\|\s", line) if part.strip()]
    return found


def test_the_generated_references_are_current():
    stale = docs_reference.stale(docs_reference.generated())
    assert not stale, f"out of date: {[str(path) for path in stale]}; run python -m tools.docs_reference"


def test_every_param_key_named_exists():
    key_pattern = re.compile(rf"(?<![\w./-])((?:{'|'.join(SECTIONS)})\.\w+)(?![\w/-]|\.[\w<*])")
    wrong = []
    for page in PAGES:
        text = _text(page)
        for key in re.findall(r"-S\s+['\"]?([\w.]+)=", text):
            if key not in PARAM_KEYS:
                wrong.append(f"{_name(page)}: -S {key}")
        for key in key_pattern.findall(text):
            if key.split(".")[1] not in SUFFIXES and key not in PARAM_KEYS and key not in METRIC_KEYS:
                wrong.append(f"{_name(page)}: {key}")
    assert not wrong, f"not a key of params.yaml (skinlesion.schema.ParamsFile): {sorted(set(wrong))}"


def _expand(path: str) -> list[str]:
    """`a/{b,c}.py` -> a/b.py, a/c.py (one level of braces)."""
    match = re.search(r"\{([^{}]*)\}", path)
    if not match:
        return [path]
    return [
        expanded
        for option in match[1].split(",")
        for expanded in _expand(path[: match.start()] + option + path[match.end() :])
    ]


def _as_glob(path: str) -> str:
    return re.sub(r"<[^>]*>", "*", path.replace("\\|", "|"))


def _named_paths(text: str) -> set[str]:
    paths = set()
    for span in code_spans(text):
        for token in span.split():
            token = token.strip("'\"(),;:.").removesuffix("/")
            if token.startswith(SOURCE_ROOTS + PIPELINE_ROOTS) or token in TOP_FILES:
                paths.add(token)
    return paths


def _outputs() -> list[list[str]]:
    """dvc.yaml's outputs and the pipeline folders that hold none, as glob parts (a fold is `*`)."""
    outputs = [output["path"] for output in docs_reference.stage_outputs()]
    variables = yaml.safe_load((REPO / "dvc.yaml").read_text())["vars"]
    folders = [path for entry in variables for path in entry.get("paths", {}).values()]
    empty = [path for path in folders if not any(output.startswith(f"{path}/") or output == path for output in outputs)]
    return [_as_glob(path).split("/") for path in outputs + empty + list(NOT_OUTPUTS)]


def _is_pipeline_path(path: str, outputs: list[list[str]]) -> bool:
    """An output of dvc.yaml, a file inside one, or a folder that holds one."""
    parts = _as_glob(path).split("/")
    for output in outputs:
        pairs = list(zip(parts, output))
        if all(fnmatch.fnmatch(mine, theirs) or fnmatch.fnmatch(theirs, mine) for mine, theirs in pairs):
            return True
    return False


def test_every_repository_path_named_exists():
    outputs, missing = _outputs(), []
    for page in PAGES:
        for named in _named_paths(_text(page)):
            for path in _expand(named):
                if path.startswith(PIPELINE_ROOTS):
                    found = _is_pipeline_path(path, outputs)
                else:
                    found = any(REPO.glob(_as_glob(path))) if any(c in path for c in "*?[<") else (REPO / path).exists()
                if not found:
                    missing.append(f"{_name(page)}: {path}")
    assert not missing, f"paths that neither exist nor are outputs of dvc.yaml: {sorted(missing)}"


def test_the_readme_links_exist():
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", _text(REPO / "README.md"))
    missing = [target for target in targets if "://" not in target and not (REPO / target).exists()]
    assert not missing, f"README links to missing files: {missing}"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def _dvc_exp_run_flags() -> set[str]:
    """What `skinlesion run-profile` passes through to `dvc exp run`."""
    from dvc.cli.parser import get_main_parser

    return _flags(_subcommands(_subcommands(get_main_parser())["exp"])["run"])


def test_every_skinlesion_command_and_flag_shown_exists():
    commands_by_name = _subcommands(skinlesion_parser())
    wrong = []
    for page in PAGES:
        for command in commands(_text(page)):
            for name, rest in re.findall(r"(?:^|\s)skinlesion\s+([a-z][\w-]*)(.*)", command):
                if name not in commands_by_name:
                    wrong.append(f"{_name(page)}: skinlesion {name}")
                    continue
                known = _flags(commands_by_name[name])
                if name == "run-profile":
                    known |= _dvc_exp_run_flags()
                wrong += [
                    f"{_name(page)}: skinlesion {name} {flag}"
                    for flag in re.findall(r"--[\w-]+", rest)
                    if flag not in known
                ]
    assert not wrong, f"not in skinlesion.cli.parser(): {wrong}"


def test_every_project_module_run_with_python_m_exists():
    missing = []
    for page in PAGES:
        for command in commands(_text(page)):
            for module in re.findall(r"python3?\s+-m\s+([\w.]+)", command):
                if module.split(".")[0] not in ("skinlesion", "stages", "benchmarks", "tools"):
                    continue
                path = REPO / module.replace(".", "/")
                if not (path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()):
                    missing.append(f"{_name(page)}: python -m {module}")
    assert not missing, f"modules that do not exist: {missing}"


def rerun_rows() -> dict[str, set[str]]:
    """docs/pipeline.md's rerun table: param -> the stages `dvc status` marks."""
    text = _text(REPO / "docs" / "pipeline.md")
    table = text[text.index("| you change (for example) |") :].split("\n\n")[0]
    rows = re.findall(r"^\| `([\w.]+)` \| ([^|]+) \|", table, flags=re.M)
    return {key: {stage.strip() for stage in stages.split(",")} for key, stages in rows}


def test_the_rerun_table_names_the_stages_that_read_each_param():
    """Each row but cv.folds (which adds fold stages) against the params dvc.yaml lists per stage;
    tests/test_rerun_table.py runs dvc status on them."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    rows = rerun_rows()
    assert rows, "no rerun table in docs/pipeline.md"
    for key, marked in rows.items():
        if key == "cv.folds":
            continue
        section, name = key.split(".")
        readers = {
            stage + ("@0" if "foreach" in stages[stage] else "")
            for stage in docs_reference.readers(section, name)
            if stages[stage].get("foreach") != "${evaluate.external}"  # none by default: dvc status has none
        }
        assert marked == readers, key


def _nav_pages(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return []


def test_every_docs_page_is_in_the_site():
    nav = _nav_pages(yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"])
    pages = [str(page.relative_to(REPO / "docs")) for page in sorted((REPO / "docs").rglob("*.md"))]
    assert sorted(nav) == pages


def test_the_readme_stays_a_guide_not_a_manual():
    assert len(_text(REPO / "README.md").splitlines()) <= 200


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed")
def test_the_site_builds_without_a_broken_link(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
