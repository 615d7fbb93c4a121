"""dvc.yaml matches the code: each stage depends on exactly the modules it imports and lists
exactly the params its schema reads."""

import ast
import builtins
import importlib
import re

import pytest
import yaml
from conftest import REPO, load_tool
from pydantic import BaseModel

# a stage run once per fold (foreach) is checked through its template, `do`
STAGES = {
    name: stage.get("do", stage) for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items()
}
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
stage_deps = load_tool("stage_deps")


def _tree(module: str) -> ast.Module:
    return ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text())


def _stage_module(name: str) -> str:
    return re.search(r"-m\s+(stages\.\w+)", STAGES[name]["cmd"]).group(1)


def _schema_keys(schema: type[BaseModel]) -> set[str]:
    """The params keys a stage's schema reads: a whole section it owns, or the keys of a view."""
    keys = set()
    for section, field in schema.model_fields.items():
        model = field.annotation
        if model.model_config.get("extra") == "forbid":  # a whole section: unknown keys refused
            keys.add(section)
        else:
            keys |= {f"{section}.{key}" for key in model.model_fields}
    return keys


@pytest.mark.parametrize("name", sorted(STAGES))
def test_deps_list_every_imported_module(name):
    listed = [d for d in STAGES[name]["deps"] if d.startswith(("stages/", "skinlesion/"))]
    assert listed == stage_deps.module_deps(_stage_module(name)), "run python -m tools.stage_deps"


def test_module_lists_are_what_the_tool_writes():
    """tools/stage_deps.py rewrites only the module lines: on a current dvc.yaml it changes nothing."""
    text = (REPO / "dvc.yaml").read_text()
    assert stage_deps.rewrite(text) == text


def test_the_tool_adds_a_new_import_to_every_stage_that_reaches_it(monkeypatch):
    text = (REPO / "dvc.yaml").read_text()
    real = stage_deps._imports

    def imports(module):  # skinlesion.seeding gains an import of a new module, skinlesion.x
        if module == "skinlesion.x":
            return []
        return real(module) + (["skinlesion.x"] if module == "skinlesion.seeding" else [])

    monkeypatch.setattr(stage_deps, "_imports", imports)
    monkeypatch.setattr(stage_deps, "project_imports", stage_deps.project_imports.__wrapped__)
    rewritten = stage_deps.rewrite(text)
    readers = {name for name in STAGES if "skinlesion.seeding" in stage_deps.project_imports(_stage_module(name))}
    assert readers and rewritten.count("- skinlesion/x.py") == len(readers)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_params_are_exactly_what_the_stage_schema_reads(name):
    """Each stage loads one schema (`load_params(XRun)`); dvc.yaml lists exactly its keys."""
    calls = [
        node
        for node in ast.walk(_tree(_stage_module(name)))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "load_params"
    ]
    assert len(calls) == 1
    schema_name = calls[0].args[0].id
    imported = {
        alias.name: node.module
        for node in ast.walk(_tree(_stage_module(name)))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    # the schema of a stage that owns no section of its own may live in the stage module
    schema = getattr(importlib.import_module(imported.get(schema_name, _stage_module(name))), schema_name)
    assert set(STAGES[name]["params"]) == _schema_keys(schema)
    for key in STAGES[name]["params"]:
        node = PARAMS
        for part in key.split("."):
            assert part in node, f"{name}: {key} is not in params.yaml"
            node = node[part]


def test_package_init_files_hold_only_a_docstring():
    """Importing a module runs its packages' __init__.py; they carry no code, so the deps above
    can leave them out."""
    for path in (REPO / "skinlesion").rglob("__init__.py"):
        body = ast.parse(path.read_text()).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), path


def test_no_file_prepare_split_depends_on_mentions_a_training_only_option():
    from skinlesion.schema import ParamsFile

    sections = ParamsFile.model_fields
    others = {key for name, field in sections.items() if name != "training" for key in field.annotation.model_fields}
    # `compile` is also a Python builtin (re.compile): its use is no sign of the option
    training_only = set(sections["training"].annotation.model_fields) - others - set(dir(builtins))
    for dep in STAGES["prepare-split"]["deps"]:
        if dep.endswith(".py"):
            tree = ast.parse((REPO / dep).read_text())
            used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}  # settings.epochs
            used |= {getattr(node.target, "id", "") for node in ast.walk(tree) if isinstance(node, ast.AnnAssign)}
            assert not used & training_only, dep


def test_prepare_split_declares_each_file_it_writes_as_an_output():
    """No folder output whose files later stages depend on: restored from the run cache, such
    an output makes DVC look for a .dir object the fresh clone never had (docs/real_data.md)."""
    from skinlesion.data.prepare import OUTPUT_FILES

    prepared = yaml.safe_load((REPO / "dvc.yaml").read_text())["vars"][0]["paths"]["prepared"]
    outs = STAGES["prepare-split"]["outs"]
    assert [next(iter(out)) if isinstance(out, dict) else out for out in outs] == [
        f"${{paths.prepared}}/{name}" for name in OUTPUT_FILES
    ]
    assert all(not str(dep).startswith(prepared) for dep in STAGES["prepare-split"]["deps"])
