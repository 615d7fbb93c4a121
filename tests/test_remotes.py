"""Sharing through DVC remotes, with the real dvc CLI: push, clone, pull, nothing to rerun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import copy_built, run_command, run_dvc, stages_run

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def pipeline(built_tiny, tmp_path_factory) -> Path:
    """A tiny project whose pipeline has run and whose results are committed."""
    repo = copy_built(built_tiny, tmp_path_factory.mktemp("remotes") / "origin")
    run_command("git", "add", "-A", cwd=repo)
    run_command("git", "commit", "-qm", "results", cwd=repo)
    return repo


def _clone(origin: Path, target: Path) -> Path:
    run_command("git", "clone", "-q", str(origin), str(target), cwd=origin.parent)
    return target


def _check_pulled(origin: Path, clone: Path) -> None:
    """The clone has everything: nothing to rerun, and the pulled model evaluates the same."""
    assert "Data and pipelines are up to date" in run_dvc("status", cwd=clone)
    assert stages_run(run_dvc("repro", cwd=clone)) == []
    assert stages_run(run_dvc("repro", "--force", "--single-item", "evaluate", cwd=clone)) == ["evaluate"]
    assert json.loads((clone / "metrics" / "eval.json").read_text()) == json.loads(
        (origin / "metrics" / "eval.json").read_text()
    )


@pytest.mark.slow
def test_local_folder_remote_round_trip_and_a_corrupted_object(pipeline, tmp_path):
    store = tmp_path / "store"
    run_dvc("remote", "add", "-d", "shared", str(store), cwd=pipeline)
    run_dvc("remote", "modify", "shared", "verify", "true", cwd=pipeline)  # hash what is pulled
    run_dvc("push", "--run-cache", cwd=pipeline)
    run_command("git", "commit", "-qam", "local remote", cwd=pipeline)
    clone = _clone(pipeline, tmp_path / "clone")
    run_dvc("pull", cwd=clone)
    _check_pulled(pipeline, clone)

    # the model as a DVC artifact: a version registered with a GTO tag, fetched by name from
    # the repository and its remote
    run_command("git", "tag", "-a", "lesion-classifier@v0.1.0", "-m", "Register lesion-classifier v0.1.0", cwd=pipeline)
    fetched = tmp_path / "fetched" / "model.pt"
    run_dvc("artifacts", "get", str(pipeline), "lesion-classifier", "--out", str(fetched), cwd=tmp_path)
    assert fetched.read_bytes() == (pipeline / "models" / "model.pt").read_bytes()

    # damage the model's object in the remote: a fresh pull must refuse it, not use it
    model_md5 = next(
        line.split()[-1]
        for line in (pipeline / "dvc.lock").read_text().split("path: models/model.pt")[1].splitlines()
        if "md5:" in line
    )
    obj = store / "files" / "md5" / model_md5[:2] / model_md5[2:]
    obj.write_bytes(b"corrupted" + obj.read_bytes()[9:])
    again = _clone(pipeline, tmp_path / "again")
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "pull"],
        cwd=again,
        capture_output=True,
        text=True,
        env={**os.environ, "DVC_NO_ANALYTICS": "1"},
    )
    assert result.returncode != 0
    assert "models/model.pt" in result.stdout + result.stderr
    assert not (again / "models" / "model.pt").exists()


@pytest.fixture
def s3_endpoint(monkeypatch):
    """An S3-compatible server (moto) on 127.0.0.1 with an empty bucket; yields its URL."""
    server_module = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)  # dummy credentials, kept out of every config file
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=url).create_bucket(Bucket="skin-lesion")
    yield url
    server.stop()


@pytest.mark.slow
def test_s3_remote_round_trip(pipeline, tmp_path, s3_endpoint):
    run_dvc("remote", "add", "-d", "s3", "s3://skin-lesion/store", cwd=pipeline)
    run_dvc("remote", "modify", "--local", "s3", "endpointurl", s3_endpoint, cwd=pipeline)  # not committed
    run_dvc("push", "--run-cache", cwd=pipeline)
    run_command("git", "commit", "-qam", "s3 remote", cwd=pipeline)
    config = (pipeline / ".dvc" / "config").read_text()
    assert "s3://skin-lesion/store" in config and "endpointurl" not in config and "testing" not in config

    clone = _clone(pipeline, tmp_path / "clone")
    run_dvc("remote", "modify", "--local", "s3", "endpointurl", s3_endpoint, cwd=clone)
    run_dvc("pull", "--run-cache", cwd=clone)
    _check_pulled(pipeline, clone)
