"""Each row of the rerun table (docs/pipeline.md): changing that param marks exactly those stages."""

import re

import pytest
import yaml
from conftest import REPO, copy_built, run_dvc
from test_docs import rerun_rows

from skinlesion.schema import ParamsFile

# The rows that dvc status checks for real; tests/test_docs.py checks every row of the table
# against the params each stage lists in dvc.yaml. These three cover DVC's ways of marking a
# stage: a param in a templated dependency (data.root), new stages of a foreach (cv.folds),
# and one key that several stages read (training.device).
NEW_VALUES = {
    "data.root": "data/elsewhere",
    "cv.folds": [0, 1],
    "training.device": "cpu",
}


@pytest.fixture(scope="module")
def ran_repo(built_tiny, tmp_path_factory):
    return copy_built(built_tiny, tmp_path_factory.mktemp("rerun") / "repo")


def test_the_rows_checked_here_are_in_the_table():
    assert set(NEW_VALUES) <= set(rerun_rows())


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(NEW_VALUES))
def test_changing_a_param_marks_exactly_its_stages(ran_repo, key):
    section, name = key.split(".")
    original = (ran_repo / "params.yaml").read_text()
    try:
        changed = yaml.safe_load(original)
        changed[section][name] = NEW_VALUES[key]
        (ran_repo / "params.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
        status = run_dvc("status", cwd=ran_repo)
        marked = set(re.findall(r"^([\w@-]+):$", status, flags=re.M))
        assert marked == rerun_rows()[key]
    finally:
        (ran_repo / "params.yaml").write_text(original)


def _stages(repo) -> dict[str, dict]:
    """dvc.yaml's stages as dvc status names them: a stage run per fold once per fold (train@0),
    one per external test set once per set (none by default)."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    stages = {}
    for name, stage in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"].items():
        if "do" not in stage:
            stages[name] = stage
            continue
        section, key = re.fullmatch(r"\$\{(\w+)\.(\w+)\}", stage["foreach"]).groups()
        stages |= {f"{name}@{item}": stage["do"] for item in params[section][key]}
    return stages


def _sections_read(stage: dict) -> set[str]:
    return {key.split(".")[0] for key in stage.get("params", [])}


def _schema_modules() -> dict[str, set[str]]:
    """Each library module that defines (part of) a params section's schema, and those sections."""
    modules = {}
    for section, field in ParamsFile.model_fields.items():
        for cls in field.annotation.__mro__:
            if cls.__module__.startswith("skinlesion.") and cls.__module__ not in (
                "skinlesion.config",
                "skinlesion.schema",
            ):
                modules.setdefault(cls.__module__.replace(".", "/") + ".py", set()).add(section)
    return modules


@pytest.mark.parametrize("module", sorted(_schema_modules()))
def test_a_params_module_is_a_dependency_only_of_stages_that_read_its_sections(module):
    """A new option in one stage's params schema reruns no stage that does not read that
    section: dvc status marks the stages that list the module in their deps
    (tests/test_dvc_yaml.py: exactly those that import it)."""
    sections = _schema_modules()[module]
    stages = _stages(REPO)
    readers = {name for name, stage in stages.items() if _sections_read(stage) & sections}
    dependents = {name for name, stage in stages.items() if module in stage["deps"]}
    assert dependents and dependents <= readers, f"{module} ({sorted(sections)}) is a dep of {sorted(dependents)}"


@pytest.mark.slow
def test_editing_a_params_module_marks_the_stages_that_depend_on_it(ran_repo):
    module = "skinlesion/evaluation/params.py"  # the evaluate and gradcam sections' schemas
    path = ran_repo / module
    original = path.read_text()
    try:
        path.write_text(original + "\n# a new option would go here\n")
        marked = set(re.findall(r"^([\w@-]+):$", run_dvc("status", cwd=ran_repo), flags=re.M))
    finally:
        path.write_text(original)
    dependents = {name for name, stage in _stages(ran_repo).items() if module in stage["deps"]}
    assert marked == dependents == {"evaluate", "gradcam", "model-card"}
