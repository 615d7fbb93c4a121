"""dvc.yaml matches the code: each stage depends on exactly the modules it imports and lists
exactly the params its schema reads."""

import ast
import builtins
import importlib
import re

import pytest
import yaml
from conftest import REPO
from pydantic import BaseModel

# a stage run once per fold (foreach) is checked through its template, `do`
STAGES = {
    name: stage.get("do", stage) for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items()
}
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
PROJECT = ("skinlesion.", "stages.")


def _tree(module: str) -> ast.Module:
    return ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text())


def _project_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """`module` and every project module it imports, directly or not."""
    seen = set() if seen is None else seen
    if module in seen:
        return seen
    seen.add(module)
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            names = []
        for name in names:
            assert name.startswith(PROJECT) or name.split(".")[0] not in ("skinlesion", "stages"), (
                f"{module}: import a module, not a package ({name})"
            )
            if name.startswith(PROJECT):
                _project_imports(name, seen)
    return seen


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
    expected = {m.replace(".", "/") + ".py" for m in _project_imports(_stage_module(name))}
    listed = {d for d in STAGES[name]["deps"] if d.startswith(("stages/", "skinlesion/"))}
    assert listed == expected


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
    assert outs == [f"${{paths.prepared}}/{name}" for name in OUTPUT_FILES]
    assert all(not str(dep).startswith(prepared) for dep in STAGES["prepare-split"]["deps"])
