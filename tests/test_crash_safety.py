"""Every stage killed with SIGKILL part-way: nothing complete-looking is left, dvc sees it,
and the next dvc repro gives exactly the uninterrupted result."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, copy_built, run_dvc, stages_run

# stage: the N of each kill, just before the N-th move of a finished output to its final name;
# N = 2 leaves the first output complete and the rest unwritten. A stage's kills run one after
# the other in one copy of the pipeline, then one dvc repro finishes it.
KILLS = {
    "make-sample": (1,),
    "prepare-split": (1, 2),
    "assign-folds": (1,),
    "kmeans-undersample@0": (1,),
    "augment-oversample@0": (1,),
    # train writes its outputs when it has finished: its 4th move is the first of them (after
    # the best model, the state and the calibrated model in its run folder)
    "train@0": (4,),
    "ensemble": (1,),
    "evaluate": (1, 2),
    "gradcam": (1,),
    # the Markdown, then the HTML
    "model-card": (1, 2),
}


@pytest.fixture(scope="module")
def finished(built_tiny) -> Path:
    """The tiny pipeline run once without interruption."""
    return built_tiny


def _digests(path: Path) -> dict[str, str] | None:
    """Content hash of every file under `path` (or of the file itself); None if absent."""
    if not path.exists():
        return None
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _outputs(repo: Path, stage: str) -> list[str]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return [out["path"] for out in lock["stages"][stage]["outs"]]


def _forget_cached_outputs(repo: Path, stage: str) -> bool:
    """Drop the stage's outputs from the DVC cache and the run cache, so that the next dvc repro
    really runs it again (otherwise dvc checks its complete outputs out of the cache). An object
    that another stage's output shares (ensemble's copy of fold 0's model) stays: without it,
    that stage would rerun too. Returns whether every output was dropped."""
    shutil.rmtree(repo / ".dvc" / "cache" / "runs", ignore_errors=True)
    stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    shared = {out["md5"] for name, other in stages.items() if name != stage for out in other.get("outs", [])}
    for out in stages[stage]["outs"]:
        if out["md5"] not in shared:
            (repo / ".dvc" / "cache" / "files" / "md5" / out["md5"][:2] / out["md5"][2:]).unlink(missing_ok=True)
    return not shared & {out["md5"] for out in stages[stage]["outs"]}


@pytest.mark.slow
@pytest.mark.parametrize("stage", KILLS)
def test_a_killed_stage_leaves_no_complete_looking_output_and_reruns_identically(finished, tmp_path, stage):
    repo = tmp_path / "repo"
    copy_built(finished, repo)
    forgotten = _forget_cached_outputs(repo, stage)
    outputs = _outputs(repo, stage)
    expected = {path: _digests(finished / path) for path in outputs}
    for rename in KILLS[stage]:
        _kill_before_move(repo, stage, rename, outputs, expected)
    assert f"{stage}:" in run_dvc("status", cwd=repo)

    output = run_dvc("repro", cwd=repo)
    # the same outputs again: nothing downstream reruns (a stage whose outputs are still in the
    # cache may be checked out as dvc.lock records them instead)
    restored = not forgotten and f"Stage '{stage}' is cached - skipping run" in output
    assert stages_run(output) == ([] if restored else [stage])
    assert (repo / "dvc.lock").read_text() == (finished / "dvc.lock").read_text()
    assert {path: _digests(repo / path) for path in outputs} == expected
    leftovers = [p for p in repo.rglob("*.tmp-*") if ".dvc" not in p.parts and ".git" not in p.parts]
    assert leftovers == []


def _kill_before_move(repo: Path, stage: str, rename: int, outputs: list[str], expected: dict) -> None:
    """Run `stage` in `repo` until just before its `rename`-th move of an output, kill it with
    SIGKILL there, and check that no output is left partial under its final name."""
    record = repo.parent / f"killed-{rename}"
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "PYTHONPATH": str(REPO / "tests" / "crash_hook"),
        "KILL_BEFORE_RENAME": str(rename),
        "KILL_RECORD": str(record),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    killed = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "--force", "--single-item", stage],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert record.exists() and killed.returncode != 0, f"{stage} was not killed:\n{killed.stdout}\n{killed.stderr}"
    about_to_write = (repo / record.read_text()).resolve().relative_to(repo.resolve())

    for path in outputs:
        digests = _digests(repo / path)
        assert digests is None or digests == expected[path], f"{path}: a partial output under its final name"
    # killed while writing one of its outputs (or the folder that holds some of them)
    overlaps = [path for path in outputs if Path(path) in (about_to_write, *about_to_write.parents)]
    assert overlaps or any(about_to_write in Path(path).parents for path in outputs), about_to_write
