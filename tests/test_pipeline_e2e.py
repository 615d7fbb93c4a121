"""The whole pipeline through the real dvc CLI, on a tiny copy of the repository."""

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import (
    ALL_STAGES,
    TINY,
    check_eval_json,
    copy_built,
    copy_repo,
    first_repro,
    run_cli,
    run_command,
    run_dvc,
    serve_folder,
    stages_run,
    write_params,
)
from PIL import Image

from skinlesion.classes import CLASSES
from skinlesion.data.arrays import read_manifest
from skinlesion.data.metadata import FIELDS, check_metadata
from skinlesion.model.model_file import read_checkpoint


@pytest.fixture
def repo(built_tiny, tmp_path) -> Path:
    """A copy of the tiny pipeline as built from scratch (built_tiny), one for each test: what
    one test changes, another never sees."""
    return copy_built(built_tiny, tmp_path / "repo")


@pytest.mark.slow
def test_repro_experiments_and_metrics(repo, built_tiny):
    assert stages_run(first_repro(built_tiny)) == ALL_STAGES  # the run from scratch that built it
    for path in [
        "data/prepared/train.npy",
        "data/prepared/test.csv",
        "data/folds/assignment.csv",
        "data/folds/0/kept.csv",
        "data/folds/0/balanced.csv",
        "models/folds/0/model.pt",
        "models/model.pt",
        "eval/predictions.csv",
        "eval/curves/reliability.csv",
        "dvclive/folds/0/metrics.json",
        "plots/folds/0/kmeans.png",
        "plots/folds/0/augment.png",
    ]:
        assert (repo / path).is_file(), path
    overlays = {path.name for path in (repo / "plots" / "gradcam").glob("*.png")}
    predictions = pd.read_csv(repo / "eval" / "predictions.csv")
    expected = {label for label, group in predictions.groupby("label") if (group["label"] == group["predicted"]).any()}
    assert {
        name.split("_")[0] for name in overlays if "_correct_" in name
    } == expected  # one right per class that has one
    assert any("_wrong_" in name for name in overlays)
    report = check_eval_json(repo)["test"]  # balanced accuracy, its interval, the unknown rate recomputed
    assert set(report["per_class"]) == set(CLASSES)
    assert (repo / "models" / "model.pt").read_bytes() == (repo / "models" / "folds" / "0" / "model.pt").read_bytes()
    balanced = json.loads((repo / "metrics" / "folds" / "0" / "oversample.json").read_text())["after"]
    majority, minority = TINY["sampling"]["majority_target"], TINY["sampling"]["minority_target"]
    assert balanced == {name: majority if name in ("MEL", "NV") else minority for name in CLASSES}

    assert stages_run(run_dvc("repro", cwd=repo)) == []  # nothing changed, nothing runs
    run_command("git", "add", "-A", cwd=repo)
    run_command("git", "commit", "-qm", "first run", cwd=repo)

    write_params(repo, {**TINY, "gradcam": {"correct_per_class": 1, "wrong_per_class": 0}})
    status = run_dvc("status", cwd=repo)
    assert "gradcam:" in status and "train@0:" not in status and "evaluate:" not in status
    assert stages_run(run_dvc("repro", cwd=repo)) == ["gradcam", "model-card"]  # the card shows the overlays
    assert {path.name for path in (repo / "plots" / "gradcam").glob("*.png")} == {
        name for name in overlays if "_correct_" in name
    }
    run_command("git", "add", "-A", cwd=repo)
    run_command("git", "commit", "-qm", "three overlays", cwd=repo)

    output = run_dvc("exp", "run", "-S", "training.epochs=2", cwd=repo)
    ran = stages_run(output)  # evaluate and gradcam rerun only if the best checkpoint changed
    assert ran[:2] == ["train@0", "ensemble"]
    assert set(ran) <= {"train@0", "ensemble", "evaluate", "gradcam", "model-card"}
    assert json.loads((repo / "dvclive" / "folds" / "0" / "metrics.json").read_text())["step"] == 1  # steps 0, 1
    shown = run_dvc("exp", "show", "--md", cwd=repo)
    assert "training.epochs" in shown and "| 2 " in shown
    diff = run_dvc("metrics", "diff", "--all", cwd=repo)
    assert "test.balanced_accuracy" in diff


@pytest.fixture
def isic_server(tmp_path, shared_data):
    """An HTTP server on 127.0.0.1 serving the 70 real images, zipped as the official
    download is, and their two CSVs; yields its base URL."""
    mini = shared_data / "isic2019-mini"
    served = tmp_path / "served"
    served.mkdir()
    for name in ("ISIC_2019_Training_GroundTruth.csv", "ISIC_2019_Training_Metadata.csv"):
        shutil.copy(mini / name, served / name)
    with zipfile.ZipFile(served / "ISIC_2019_Training_Input.zip", "w") as archive:
        for jpg in sorted((mini / "ISIC_2019_Training_Input").glob("*.jpg")):
            archive.write(jpg, f"ISIC_2019_Training_Input/{jpg.name}")
    with serve_folder(served) as url:
        yield url


@pytest.mark.slow
def test_import_url_then_repro_on_real_isic_images(tmp_path, isic_server):
    """dvc import-url of the zip and CSVs from a local server, then prepare-split on them."""
    overrides = {
        **TINY,
        "data": {"root": "data/isic2019"},
        "sampling": {"majority_target": 8, "minority_target": 8, "kmeans_clusters": 2},
        "gradcam": {"correct_per_class": 1, "wrong_per_class": 1},
    }
    repo = copy_repo(tmp_path / "repo", overrides)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    refused = subprocess.run(
        [sys.executable, "-m", "skinlesion", "import-isic", "--base-url", isic_server],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert (
        refused.returncode != 0 and "is not that of the official ISIC 2019 file" in refused.stderr
    )  # the mini CSVs are a subset
    for name in (
        "ISIC_2019_Training_Input.zip",
        "ISIC_2019_Training_GroundTruth.csv",
        "ISIC_2019_Training_Metadata.csv",
    ):
        assert (repo / "data" / "isic2019" / f"{name}.dvc").is_file(), name
    assert "frozen: true" in (repo / "data" / "isic2019" / "ISIC_2019_Training_Input.zip.dvc").read_text()

    # the real images through prepare-split, read from the imported zip (the whole pipeline on
    # real images: test_queued_experiments_with_every_option_on_real_images_from_a_fresh_clone)
    assert stages_run(run_dvc("repro", "prepare-split", cwd=repo)) == ["prepare-split"]
    counts = json.loads((repo / "metrics" / "data.json").read_text())
    assert sum(counts[name]["total"] for name in ("train", "val", "test")) == 70
    assert stages_run(run_dvc("repro", "prepare-split", cwd=repo)) == []


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
def test_plots_page_renders_offline(repo, tmp_path):
    """dvc plots show writes a page that needs no network, and headless Chromium draws it."""
    run_dvc("repro", cwd=repo)
    run_dvc("plots", "show", "--out", "dvc_plots", cwd=repo)
    page = (repo / "dvc_plots" / "index.html").read_text()
    assert not re.search(r"<script[^>]+src=", page), "the page loads a script from elsewhere"
    assert "vegaEmbed" in page and "vega-lite@5.2.0" in page
    charts = page.count("vegaEmbed(")
    assert charts >= 8  # three curves, two confusion matrices, ROC, PR, reliability
    # two revisions side by side: the committed results against an experiment in the workspace
    run_command("git", "add", "-A", cwd=repo)
    run_command("git", "commit", "-qm", "plots base", "--allow-empty", cwd=repo)
    run_dvc("exp", "run", "-S", "evaluate.calibration_bins=5", cwd=repo)
    run_dvc("plots", "diff", "HEAD", "--out", "diff_plots", cwd=repo)
    diff_page = (repo / "diff_plots" / "index.html").read_text()
    assert '"HEAD"' in diff_page and '"workspace"' in diff_page and not re.search(r"<script[^>]+src=", diff_page)
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=15000",
    ]
    url = (repo / "dvc_plots" / "index.html").as_uri()
    dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<canvas") >= charts  # every chart was drawn (vega-embed renders to canvas)
    shot = tmp_path / "page.png"
    subprocess.run(
        [browser, *flags, "--window-size=1200,2400", f"--screenshot={shot}", url], capture_output=True, timeout=120
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10  # not a blank page


def dev_subset(shared_data: Path, folder: Path, per_class: int) -> Path:
    """An ISIC-layout folder with up to `per_class` images of each class of the real dev set."""
    dev = shared_data / "isic2019-dev"
    truth = pd.read_csv(dev / "ISIC_2019_Training_GroundTruth.csv")
    labels = truth[["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]].idxmax(axis=1)
    chosen = truth[labels.groupby(labels).cumcount() < per_class]
    (folder / "ISIC_2019_Training_Input").mkdir(parents=True)
    for image in chosen["image"]:
        os.link(dev / "ISIC_2019_Training_Input" / f"{image}.jpg", folder / "ISIC_2019_Training_Input" / f"{image}.jpg")
    chosen.to_csv(folder / "ISIC_2019_Training_GroundTruth.csv", index=False)
    metadata = pd.read_csv(dev / "ISIC_2019_Training_Metadata.csv")
    metadata[metadata["image"].isin(chosen["image"])].to_csv(folder / "ISIC_2019_Training_Metadata.csv", index=False)
    return folder


def run_queue(repo: Path, timeout: float = 600) -> str:
    """Start the queued experiments of `repo`, wait until none is queued or running, and
    return `dvc queue status`."""
    run_dvc("queue", "start", cwd=repo)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = run_dvc("queue", "status", cwd=repo)
        if not re.search(r"\b(Queued|Running)\b", status):
            return status
        time.sleep(3)
    pytest.fail(f"experiments still queued or running after {timeout} s:\n{status}")


@pytest.mark.slow
def test_a_sweep_queues_one_experiment_per_value(repo):
    """`-S key=a,b` queues one experiment per value, each with its params (the queue itself
    runs in the next test)."""
    run_command("git", "add", "-A", cwd=repo)
    run_command("git", "commit", "-qm", "baseline for the queue", "--allow-empty", cwd=repo)
    run_dvc("exp", "run", "--queue", "-S", "model.name=densenet121,resnet50", cwd=repo)
    table = list(csv.DictReader(io.StringIO(run_dvc("exp", "show", "--csv", cwd=repo))))
    queued = [row["model.name"] for row in table if row.get("State") == "Queued"]
    assert sorted(queued) == ["densenet121", "resnet50"]


@pytest.mark.slow
def test_queued_experiments_with_every_option_on_real_images_from_a_fresh_clone(repo, tmp_path, shared_data):
    """Two experiments queued in a fresh clone, on an absolute data root outside the repository:
    a few hundred real dev-set images, whose metadata has gaps. The clone's dvc.lock points at
    sample outputs it never had; the first experiment fills the run cache, the second restores
    the stages up to training from it, and both must succeed (with a folder output, the second
    failed: 'failed to load directory'). Both turn on every option past the recipe: metadata
    fusion, temperature scaling, hairs and frames, and the first TTA. Both score isic2019-mini
    as an external set, and skinlesion compare pairs the two on the test split and on it."""
    run_command("git", "add", "-A", cwd=repo)
    run_command("git", "commit", "-qm", "lock of the sample run", "--allow-empty", cwd=repo)
    clone = tmp_path / "clone"
    run_command("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path)
    root = dev_subset(shared_data, tmp_path / "dev", per_class=25).resolve()
    real = {"data.root": str(root), "sampling.majority_target": "25", "sampling.minority_target": "15"}
    options = {
        "model.use_metadata": "true",
        "evaluate.tta": "dihedral",
        "training.calibration": "temperature",
        "augmentation.hair": "0.5",
        "augmentation.frame": "0.5",
    }
    mini = f"+evaluate.external.mini={shared_data / 'isic2019-mini'}"
    for name, settings in (("options", {**real, **options}), ("no-tta", {**real, **options, "evaluate.tta": "none"})):
        flags = [arg for key, value in settings.items() for arg in ("-S", f"{key}={value}")]
        run_dvc("exp", "run", "--queue", "--name", name, *flags, "-S", mini, cwd=clone)
    status = run_queue(clone)
    assert status.count("Success") == 2 and "Failed" not in status, status
    assert "Stage 'train@0' is cached - skipping run" in run_dvc("queue", "logs", "no-tta", cwd=clone)

    # dvc exp show tables each run's params and metrics; exp apply brings one back
    table = list(csv.DictReader(io.StringIO(run_dvc("exp", "show", "--csv", cwd=clone))))
    runs = {row["Experiment"]: row for row in table if row.get("Experiment")}
    assert runs["no-tta"]["evaluate.tta"] == "none" and runs["options"]["evaluate.tta"] == "dihedral"
    run_dvc("exp", "apply", "options", cwd=clone)
    assert yaml.safe_load((clone / "params.yaml").read_text())["model"]["use_metadata"] is True
    assert str(root) in (clone / "dvc.lock").read_text()
    counts = json.loads((clone / "metrics" / "data.json").read_text())
    assert sum(counts[split]["total"] for split in ("train", "val", "test")) == len(list(root.glob("*/*.jpg")))
    report = check_eval_json(clone)
    assert report["test"]["balanced_accuracy"] == pytest.approx(float(runs["options"]["test.balanced_accuracy"]))
    calibrated = read_checkpoint(clone / "models" / "model.pt")
    assert report["test"]["tta"] == "dihedral" and report["model"]["metadata"] is True
    assert report["model"]["temperature"] == calibrated["temperature"] != 1.0  # fitted on val, not the default
    assert report["test"]["images"] > 20
    probabilities = pd.read_csv(clone / "eval" / "predictions.csv").filter(like="p_")
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    assert list((clone / "plots" / "gradcam").glob("*.png"))
    # every training row, copies included, carries its source image's metadata, gaps as gaps
    official = pd.read_csv(root / "ISIC_2019_Training_Metadata.csv", dtype=str, keep_default_na=False)
    official = check_metadata(official, "official").set_index(official["image"])
    balanced = read_manifest(clone / "data" / "folds" / "0" / "balanced.csv")
    assert balanced["augmented"].any() and (balanced["anatom_site_general"] == "").any()
    assert balanced[list(FIELDS)].equals(official.loc[balanced["source_image"]].reset_index(drop=True))

    # the external set: scored less the images of lesions the subset holds, and on the card
    external = json.loads((clone / "metrics" / "external" / "mini.json").read_text())
    assert external["images_in_folder"] == 70 and external["images"] + external["overlap_excluded"]["total"] == 70
    assert f"| mini | {external['images']} |" in (clone / "models" / "model_card.md").read_text()
    # compare pairs the two queued experiments on both image sets: B - A from the figures each reported
    result = run_cli("compare", "no-tta", "options", "--resamples", "200", "--json", cwd=clone)
    assert result.returncode == 0, result.stderr
    sets = json.loads(result.stdout)[0]["sets"]
    assert list(sets) == ["test", "mini"]
    for name, options_figure in (("test", report["test"]), ("mini", external)):
        figures = sets[name]["balanced_accuracy"]
        assert sets[name]["images"] == options_figure["images"] and 0 <= sets[name]["mcnemar"]["p_value"] <= 1
        assert figures["b"]["mean"] == pytest.approx(options_figure["balanced_accuracy"], abs=1e-4)
        assert figures["difference"] == pytest.approx(figures["b"]["mean"] - figures["a"]["mean"], abs=2e-4)
        assert figures["ci95"][0] <= figures["difference"] <= figures["ci95"][1]


def _named(tree, name: str):
    """The first record of an experiment called `name` anywhere in `dvc exp show --json` output."""
    if isinstance(tree, dict):
        if tree.get("name") == name and "data" in tree:
            return tree
        tree = list(tree.values())
    if isinstance(tree, list):
        return next((found for item in tree if (found := _named(item, name)) is not None), None)
    return None


@pytest.mark.slow
def test_a_profile_runs_as_an_experiment_beside_the_workspace_run(repo):
    """`skinlesion run-profile NAME` shows in dvc exp show with the profile's params, and leaves
    params.yaml and the rest of the workspace unchanged."""
    # an evaluate param only: the experiment reruns evaluate and takes the rest from the cache
    (repo / "profiles" / "tiny.yaml").write_text("evaluate:\n  bootstrap_resamples: 50\n")
    run_command("git", "add", "-A", cwd=repo)
    run_command("git", "commit", "-qm", "tiny profile", cwd=repo)
    params_before = (repo / "params.yaml").read_text()
    output = run_command(sys.executable, "-m", "skinlesion", "run-profile", "tiny", cwd=repo)
    assert "Running stage 'evaluate'" in output and "Running stage 'train@0'" not in output
    assert run_command("git", "status", "--porcelain", cwd=repo).strip() == ""
    assert (repo / "params.yaml").read_text() == params_before
    experiment = _named(json.loads(run_dvc("exp", "show", "--json", cwd=repo)), "tiny")
    params = experiment["data"]["params"]["params.yaml"]["data"]
    assert params["evaluate"]["bootstrap_resamples"] == 50
    assert "test" in experiment["data"]["metrics"]["metrics/eval.json"]["data"]
