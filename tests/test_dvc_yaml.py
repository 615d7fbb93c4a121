"""dvc.yaml matches the code: each stage depends on exactly the project modules it imports."""

import ast
import re

import pytest
import yaml

from conftest import REPO

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def _project_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """`module` and every stages.* module it imports, directly or not."""
    seen = set() if seen is None else seen
    if module in seen:
        return seen
    seen.add(module)
    tree = ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text())
    for node in ast.walk(tree):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else [a.name for a in getattr(node, "names", [])] if isinstance(node, ast.Import) else []
        for name in names:
            if name.startswith("stages."):
                _project_imports(name, seen)
    return seen


@pytest.mark.parametrize("name", sorted(STAGES))
def test_deps_list_every_imported_module(name):
    stage = STAGES[name]
    module = re.search(r"-m\s+(stages\.\w+)", stage["cmd"]).group(1)
    expected = {m.replace(".", "/") + ".py" for m in _project_imports(module)}
    listed = {d for d in stage["deps"] if d.startswith("stages/")}
    assert listed == expected


@pytest.mark.parametrize("name", sorted(STAGES))
def test_params_exist(name):
    for key in STAGES[name].get("params", []):
        node = PARAMS
        for part in key.split("."):
            assert part in node, f"{name}: {key} is not in params.yaml"
            node = node[part]
