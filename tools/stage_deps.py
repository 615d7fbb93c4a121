"""Write the module lists of dvc.yaml from the import graph.

Each stage's `deps` list its module and every project module it imports, directly or not, so
that a change reruns exactly the stages it can affect. This tool keeps those lists: run
`python -m tools.stage_deps` after changing an import; `--check` exits 1 when dvc.yaml is
stale (tests/test_dvc_yaml.py runs the same check). Only the module lines are rewritten; the
other deps, comments and layout stay as written.
"""

from __future__ import annotations

import argparse
import ast
import functools
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROJECT = ("skinlesion", "stages")
_STAGE = re.compile(r"^  ([\w-]+):\s*$")  # a stage's name, under `stages:`
_CMD_MODULE = re.compile(r"-m\s+(stages\.\w+)")
_MODULE_LINE = re.compile(r"^(\s*)- ((?:stages|skinlesion)/\S+\.py)\s*$")


def _imports(module: str) -> list[str]:
    """The project modules `module` imports anywhere in its file (inside functions too)."""
    tree = ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise ValueError(f"{module}: a relative import; write the module's full name")
        if isinstance(node, ast.ImportFrom) and node.module:
            # `from skinlesion.serve import requests` imports the module skinlesion.serve.requests
            submodules = [f"{node.module}.{alias.name}" for alias in node.names]
            found = [name for name in submodules if (REPO / (name.replace(".", "/") + ".py")).is_file()]
            names.extend(found or [node.module])
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    project = [name for name in names if name.split(".")[0] in PROJECT]
    packages = [name for name in project if "." not in name]
    if packages:
        raise ValueError(f"{module}: import a module, not a package ({packages[0]})")
    return project


@functools.cache
def project_imports(module: str) -> set[str]:
    """`module` and every project module it imports, directly or not."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_imports(name))
    return seen


def module_deps(stage_module: str) -> list[str]:
    """The deps lines of a stage run as `python -m stage_module`: its file, then the library's, sorted."""
    files = {name.replace(".", "/") + ".py" for name in project_imports(stage_module)}
    own = stage_module.replace(".", "/") + ".py"
    return [own, *sorted(files - {own})]


def rewrite(text: str) -> str:
    """dvc.yaml's text with every stage's module lines generated anew."""
    lines, out, stage = text.splitlines(keepends=True), [], None
    cmd_modules: dict[str, str] = {}
    for line in lines:  # first pass: each stage's module, from its cmd (which may span lines)
        if match := _STAGE.match(line):
            stage = match.group(1)
        elif stage and (match := _CMD_MODULE.search(line)):
            cmd_modules.setdefault(stage, match.group(1))
    stage, written = None, set()
    for line in lines:
        if match := _STAGE.match(line):
            stage = match.group(1)
        module_line = _MODULE_LINE.match(line)
        if not module_line:
            out.append(line)
            continue
        if stage not in cmd_modules:
            raise ValueError(f"dvc.yaml: stage {stage} lists modules but runs no python -m stages.<module>")
        if stage not in written:  # the generated list replaces the first module line and the rest
            indent = module_line.group(1)
            out.extend(f"{indent}- {path}\n" for path in module_deps(cmd_modules[stage]))
            written.add(stage)
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml is stale, writing nothing")
    args = parser.parse_args(argv)
    path = REPO / "dvc.yaml"
    text = path.read_text()
    generated = rewrite(text)
    if args.check:
        if generated != text:
            print("dvc.yaml: module deps are stale; run python -m tools.stage_deps", file=sys.stderr)
            return 1
        return 0
    if generated != text:
        path.write_text(generated)
        print("dvc.yaml: module deps rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
