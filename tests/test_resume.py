"""A training run killed with SIGKILL resumes on the next dvc repro, with continuous curves."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, copy_built, run_dvc, stages_run, write_params


def _saved_epoch(path: Path) -> int:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["epoch"]
    except (FileNotFoundError, RuntimeError, EOFError):
        return -1


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_epoch(built_tiny, tmp_path):
    # a learning rate too small to improve anything: the best epoch stays 0, so the resumed run
    # must keep the model saved before the kill
    repo = copy_built(built_tiny, tmp_path / "repo", untrained=True)
    (repo / "metrics" / "eval.json").unlink()  # evaluate must not run until training has finished
    write_params(repo, {**TINY, "training": {"epochs": 4, "num_workers": 0, "learning_rate": 1e-12}})
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    state = repo / "models" / "resume" / "0" / "state.pt"
    deadline = time.monotonic() + 300
    while _saved_epoch(state) < 0 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # dvc and the training process with it
    process.wait()
    killed_after = _saved_epoch(state)
    assert 0 <= killed_after < 3, "the run was not caught mid-way"
    assert not (repo / "metrics" / "eval.json").exists()

    output = run_dvc("repro", cwd=repo)
    assert f"resuming from epoch {killed_after + 1}" in output
    assert stages_run(output) == ["train@0", "ensemble", "evaluate", "gradcam", "model-card"]
    for curve in ("train/loss", "val/balanced_accuracy"):
        with open(repo / "dvclive" / "folds" / "0" / "plots" / "metrics" / f"{curve}.tsv") as file:
            steps = [int(row["step"]) for row in csv.DictReader(file, delimiter="\t")]
        assert steps == [0, 1, 2, 3], curve  # continuous: nothing lost, nothing twice
    assert json.loads((repo / "dvclive" / "folds" / "0" / "metrics.json").read_text())["step"] == 3
    assert not state.parent.exists()  # the finished run's folder is gone; its model and curves are outputs
    assert torch.load(repo / "models" / "model.pt", map_location="cpu", weights_only=True)["epoch"] == 0
    assert "Data and pipelines are up to date" in run_dvc("status", cwd=repo)
