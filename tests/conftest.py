from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import balanced_accuracy_score

from skinlesion.classes import CLASSES
from skinlesion.cli import main as skinlesion
from skinlesion.cores import available_cores
from skinlesion.data.isic import GROUND_TRUTH_CSV, IMAGE_DIR, METADATA_CSV
from skinlesion.data.synthetic import SampleParams, plan_sample, write_sample
from skinlesion.model.checkpoint import load_checkpoint
from skinlesion.model.info import ModelInfo
from skinlesion.model.model_file import read_checkpoint
from skinlesion.transforms.params import AugmentationParams

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config) -> None:
    """Under pytest-xdist (`-n auto`, pyproject.toml), split the cores between the workers:
    torch in every worker, and in the stages they start, would otherwise spin threads on all
    of them, and workers slow each other several-fold."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, available_cores() // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


def load_tool(name: str):
    """The module tools/NAME.py (tools/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real ISIC 2019 files kept beside the checkout (../shared/data), or skip."""
    root = Path(os.environ.get("ISIC_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not (root / "isic2019-labels").is_dir():
        pytest.skip(f"real ISIC 2019 files not found at {root} (set ISIC_SHARED_DATA)")
    return root


def write_isic_csvs(root: Path, rows: list[tuple[str, str, str]]) -> Path:
    """Write ISIC-format CSVs for (image, class, lesion_id) rows under `root`; return root."""
    root.mkdir(parents=True, exist_ok=True)
    truth = ["image," + ",".join(CLASSES) + ",UNK"]
    meta = ["image,age_approx,anatom_site_general,lesion_id,sex"]
    for image, label, lesion in rows:
        truth.append(image + "," + ",".join("1.0" if c == label else "0.0" for c in CLASSES) + ",0.0")
        meta.append(f"{image},45,anterior torso,{lesion},female")
    (root / "ISIC_2019_Training_GroundTruth.csv").write_bytes(("\r\n".join(truth) + "\r\n").encode())
    (root / "ISIC_2019_Training_Metadata.csv").write_bytes(("\r\n".join(meta) + "\r\n").encode())
    return root


def write_params(folder: Path, overrides: dict[str, dict]) -> Path:
    """Write the repository's params.yaml into `folder` with some section keys replaced."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section].update(values)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def run_module(
    module: str, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m MODULE ARGS` in `cwd` with the repository importable, with extra `env`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "DVC_NO_ANALYTICS": "1", **(env or {})}
    command = [sys.executable, "-m", module, *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def run_stage(module: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run the stage `python -m stages.<module> ARGS` in `cwd` (which holds a params.yaml)."""
    return run_module(f"stages.{module}", *args, **kwargs)


def run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run the `skinlesion` command (as `python -m skinlesion ARGS`)."""
    return run_module("skinlesion", *args, **kwargs)


@pytest.fixture
def cli(capsys, caplog, monkeypatch):
    """Run the `skinlesion` command in this process, as run_cli does in a new one but without
    its seconds of start-up: `cli(*args, cwd=...)` gives its exit status and output (what it
    logs is in the stderr, one message a line, as pytest's log capture takes it)."""

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        caplog.clear()
        with pytest.raises(SystemExit) as exit_:
            skinlesion(list(args))
        out, err = capsys.readouterr()
        logged = "".join(f"{record.getMessage()}\n" for record in caplog.records)
        return subprocess.CompletedProcess(args, exit_.value.code, out, logged + err)

    return run


# The pipeline driven through the real dvc CLI, on a tiny copy of the repository.
TINY = {
    "sample": {"num_images": 120, "min_per_class": 8, "scale": 0.1},
    "prepare": {"image_size": 64, "workers": 2},
    "sampling": {"majority_target": 16, "minority_target": 8, "kmeans_clusters": 3},
    "training": {"epochs": 1, "num_workers": 0},
    "gradcam": {"correct_per_class": 1, "wrong_per_class": 1},
}


# a data root of its own classes (tests/test_own_data.py): HAM10000's seven in ISIC's one-hot
# layout, or three of the sample's
HAM10000 = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
THREE = ("MEL", "NV", "BCC")


def own_classes_root(source: Path, target: Path, classes: tuple[str, ...], rename: dict, metadata: bool) -> Path:
    """`source`'s images of `classes` (its columns named after `rename`) as a data root at
    `target`, the ground truth in the ISIC one-hot layout without UNK; the metadata CSV only
    with `metadata`."""
    truth = pd.read_csv(source / GROUND_TRUTH_CSV, dtype=str).rename(columns=rename)
    truth = truth.loc[truth[list(classes)].astype(float).sum(axis=1) == 1.0, ["image", *classes]]
    (target / IMAGE_DIR).mkdir(parents=True)
    truth.to_csv(target / GROUND_TRUTH_CSV, index=False)
    for image in truth["image"]:
        shutil.copy(source / IMAGE_DIR / f"{image}.jpg", target / IMAGE_DIR)
    if metadata:
        meta = pd.read_csv(source / METADATA_CSV, dtype=str, keep_default_na=False)
        meta[meta["image"].isin(truth["image"])].to_csv(target / METADATA_CSV, index=False)
    return target


@pytest.fixture(scope="session")
def seven_class_root(tmp_path_factory, shared_data) -> Path:
    """The real mini set's labels without SCC, AK named as HAM10000 names it (AKIEC)."""
    source = shared_data / "isic2019-mini"
    return own_classes_root(source, tmp_path_factory.mktemp("ham7"), HAM10000, {"AK": "AKIEC"}, metadata=True)


@pytest.fixture(scope="session")
def three_class_root(tmp_path_factory) -> Path:
    """MEL, NV and BCC of a small synthetic sample, with no metadata CSV at all."""
    folder = tmp_path_factory.mktemp("three")
    write_sample(plan_sample(SampleParams(num_images=90, min_per_class=10, scale=0.1, seed=3)), 0.1, folder / "sample")
    return own_classes_root(folder / "sample", folder / "root", THREE, {}, metadata=False)


def own_data_params(root: Path) -> dict:
    """TINY's params on the data root `root`, with a smaller model at 32 px."""
    return {
        **TINY,
        "data": {"root": str(root)},
        "prepare": {"image_size": 32, "workers": 1},
        "model": {"name": "efficientnet_b0"},
    }


def check_own_classes(repo: Path, root: Path, classes: tuple[str, ...]) -> None:
    """The pipeline of `repo`, run on `root`, followed its classes at every step, and predict does."""
    assert tuple(json.loads((repo / "data" / "prepared" / "classes.json").read_text())) == classes
    assert load_checkpoint(repo / "models" / "model.pt")[1].classes == classes
    assert tuple(json.loads((repo / "metrics" / "eval.json").read_text())["test"]["per_class"]) == classes
    assert tuple(json.loads((repo / "metrics" / "data.json").read_text())["train"]) == (*classes, "total")
    image = next((root / IMAGE_DIR).iterdir())
    result = run_cli("predict", str(image), "--model", "models/model.pt", "--out", "out.csv", cwd=repo)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(repo / "out.csv")
    assert [c for c in table.columns if c.startswith("p_")] == [f"p_{name}" for name in classes]
    assert table["predicted"].iloc[0] in classes


ALL_STAGES = [
    "make-sample",
    "prepare-split",
    "assign-folds",
    "kmeans-undersample@0",
    "augment-oversample@0",
    "train@0",
    "ensemble",
    "evaluate",
    "gradcam",
    "model-card",
]


def published_augmentation(**changes) -> AugmentationParams:
    """The published augmentation, hairs and frames off, real images augmented as the copies."""
    values = dict(
        rotation_range=30,
        h_flip=True,
        v_flip=True,
        color_jitter=(0.2, 0.2, 0.2, 0.1),
        crop_scale=(0.8, 1.0),
        seed=0,
        hair=0.0,
        frame=0.0,
        real_images="augment",
    )
    return AugmentationParams(**{**values, **changes})


def model_info(**changes) -> ModelInfo:
    """What a model file of this project holds besides its weights (a DenseNet121 at 64 px)."""
    info = dict(
        arch="densenet121",
        classes=CLASSES,
        image_size=64,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        epoch=0,
        val_balanced_accuracy=0.0,
    )
    return ModelInfo(**{**info, **changes})


def run_command(*args: str, cwd: Path) -> str:
    """Run a command (the venv's executables first on PATH); fail the test if it fails."""
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def check_eval_json(repo: Path) -> dict:
    """Recompute from `repo`'s eval/predictions.csv and models/model.pt what metrics/eval.json
    reports of the test split: balanced accuracy and accuracy (scikit-learn), the interval
    around them, and the share of images the model's unknown threshold calls unknown (the
    predictions are rounded to 6 decimals: a score that close to the threshold may differ).
    Returns eval.json."""
    report = json.loads((repo / "metrics" / "eval.json").read_text())
    test, predictions = report["test"], pd.read_csv(repo / "eval" / "predictions.csv")
    assert test["images"] == len(predictions)
    y_true, y_pred = predictions["label"], predictions["predicted"]
    assert test["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert test["accuracy"] == pytest.approx(float((y_true == y_pred).mean()))
    assert test["balanced_accuracy_ci95_low"] <= test["balanced_accuracy"] <= test["balanced_accuracy_ci95_high"]
    threshold = read_checkpoint(repo / "models" / "model.pt")["unknown_threshold"]
    assert report["model"]["unknown_threshold"] == threshold
    scores = 1 - predictions.filter(like="p_").max(axis=1).to_numpy()
    # a score within the rounding of the threshold may fall either side (an untrained model's
    # near-uniform probabilities put every image there)
    surely, perhaps = np.mean(scores > threshold + 1e-5), np.mean(scores > threshold - 1e-5)
    assert surely <= test["unknown_rate"] <= perhaps
    return report


def run_dvc(*args: str, cwd: Path) -> str:
    return run_command(sys.executable, "-m", "dvc", *args, cwd=cwd)


def stages_run(output: str) -> list[str]:
    """The stages that `dvc repro` or `dvc exp run` output says it ran, in order."""
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


@pytest.fixture(scope="session")
def built_tiny(tmp_path_factory) -> Path:
    """The tiny pipeline run once from scratch for the whole session; tests take copies
    (copy_built), and first_repro tells what that run printed."""
    repo = copy_repo(tmp_path_factory.mktemp("tiny") / "repo", TINY)
    (repo.parent / "first-repro.txt").write_text(run_dvc("repro", cwd=repo))
    return repo


def first_repro(built: Path) -> str:
    """What the `dvc repro` that built `built` (built_tiny's repository) printed."""
    return (built.parent / "first-repro.txt").read_text()


def copy_built(built: Path, target: Path, *, untrained: bool = False) -> Path:
    """A copy of the built repository `built` (git history, DVC cache and run cache, outputs),
    without DVC's per-machine state under .dvc/tmp; `untrained`: without the train stages'
    persistent outputs either (models, training states, curves), as before a first training."""

    def machine_state(folder: str, names: list[str]) -> list[str]:
        return ["tmp"] if Path(folder).name == ".dvc" else []

    shutil.copytree(built, target, symlinks=True, ignore=machine_state)
    if untrained:
        shutil.rmtree(target / "models")
        shutil.rmtree(target / "dvclive")
    return target


def copy_repo(root: Path, overrides: dict) -> Path:
    """A git+DVC copy of the project's tracked and untracked-but-not-ignored files, less the
    pipeline's outputs kept in git (metrics, plots, dvc.lock) but with the READMEs among them
    (metrics/external's keeps the folder the model card depends on)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        if (
            (REPO / name).is_file()
            and (not name.startswith(("metrics/", "plots/", "dvclive/", "eval/")) or name.endswith("/README.md"))
            and name != "dvc.lock"
        ):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    write_params(root, overrides)
    run_command("git", "init", "-q", cwd=root)
    run_command("git", "config", "user.email", "ci@example.invalid", cwd=root)
    run_command("git", "config", "user.name", "CI", cwd=root)
    run_command("git", "add", "-A", cwd=root)
    run_command("git", "commit", "-qm", "tiny pipeline", cwd=root)
    return root


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving the files of `folder`; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()
