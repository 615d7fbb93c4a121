"""Cross-validation through the dvc CLI on the tiny pipeline: folds as stages, trained on two
machines that meet through a DVC remote's run cache, then saved as an experiment that
travels with dvc exp push and pull."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, check_eval_json, copy_built, run_command, run_dvc, stages_run, write_params

from skinlesion.classes import CLASSES
from skinlesion.data.isic import GROUND_TRUTH_COLUMNS
from skinlesion.model.checkpoint import load_checkpoint
from skinlesion.model.ensemble import FoldEnsemble

FOLDS = [0, 1]


@pytest.mark.slow
def test_folds_trained_on_two_machines_meet_through_the_run_cache(built_tiny, tmp_path, cli):
    # machine one: the tiny pipeline as run with one fold, its git history and outputs shared
    one = copy_built(built_tiny, tmp_path / "one")
    run_command("git", "init", "-q", "--bare", str(tmp_path / "origin.git"), cwd=tmp_path)
    run_command("git", "remote", "add", "origin", str(tmp_path / "origin.git"), cwd=one)
    run_dvc("remote", "add", "-d", "store", str(tmp_path / "store"), cwd=one)
    write_params(one, {**TINY, "cv": {"folds": FOLDS, "seed": 42}})
    run_command("git", "add", "-A", cwd=one)
    run_command("git", "commit", "-qm", "two folds", cwd=one)
    run_command("git", "push", "-q", "origin", "HEAD", cwd=one)
    run_dvc("push", cwd=one)

    # machine two trains fold 1 and shares it through the run cache
    two = tmp_path / "two"
    run_command("git", "clone", "-q", str(tmp_path / "origin.git"), str(two), cwd=tmp_path)
    run_dvc("pull", "--allow-missing", cwd=two)  # what the one-fold run left; the new fold has none yet
    ran = stages_run(run_dvc("repro", "train@1", cwd=two))
    assert ran == ["assign-folds", "kmeans-undersample@1", "augment-oversample@1", "train@1"]
    run_dvc("push", "--run-cache", cwd=two)

    # machine one trains fold 0, takes fold 1 from the run cache and builds the ensemble
    ran = stages_run(run_dvc("repro", "train@0", cwd=one))
    assert "prepare-split" not in ran and "train@1" not in ran and "train@0" in ran
    run_dvc("fetch", "--run-cache", cwd=one)
    output = run_dvc("repro", "--pull", cwd=one)  # --pull: the objects of what the run cache restores
    assert "Stage 'train@1' is cached - skipping run" in output
    assert stages_run(output) == ["ensemble", "evaluate", "gradcam", "model-card"]  # no fold trained again
    fold_one = ("models", "folds", "1", "model.pt")
    assert one.joinpath(*fold_one).read_bytes() == two.joinpath(*fold_one).read_bytes()
    assert stages_run(run_dvc("repro", cwd=one)) == []  # a second repro reruns nothing

    model, info = load_checkpoint(one / "models" / "model.pt", CLASSES)
    assert isinstance(model, FoldEnsemble) and len(info.members) == len(FOLDS)
    report = check_eval_json(one)  # the ensemble's test figures, recomputed from its predictions
    assert report["model"]["folds"] == len(FOLDS) and set(report["cv"]["folds"]) == {"0", "1"}
    manifests = [pd.read_csv(one / "data" / "prepared" / f"{split}.csv") for split in ("train", "val")]
    assert report["cv"]["out_of_fold"]["images"] == sum(map(len, manifests))  # every train+val image once
    assert report["cv"]["out_of_fold"] == info.out_of_fold
    per_fold = [report["cv"]["folds"][str(fold)]["test"]["balanced_accuracy"] for fold in FOLDS]
    assert report["cv"]["test_mean"]["balanced_accuracy"] == pytest.approx(np.mean(per_fold))
    assert report["cv"]["test_std"]["balanced_accuracy"] == pytest.approx(np.std(per_fold, ddof=1))
    assert [report["cv"]["folds"][str(fold)]["epoch"] for fold in FOLDS] == [m.epoch for m in info.members]
    shown = run_dvc("metrics", "show", cwd=one)
    assert "test.balanced_accuracy" in shown and "cv.test_mean.balanced_accuracy" in shown

    # the ensemble writes the official submission format
    images = sorted((one / "data" / "sample" / "ISIC_2019_Training_Input").glob("*.jpg"))[:3]
    submission = tmp_path / "submission.csv"
    result = cli(
        "predict", *map(str, images), "--model", "models/model.pt", "--isic-submission", str(submission), cwd=one
    )
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(submission)
    assert list(table.columns) == list(GROUND_TRUTH_COLUMNS) and list(table["image"]) == [p.stem for p in images]
    assert ((table[[*CLASSES, "UNK"]] >= 0) & (table[[*CLASSES, "UNK"]] <= 1)).all().all()

    # a training param marks the two trains and the model card, which lists the training
    # settings, and nothing before them (ensemble, evaluate and gradcam follow when the models change)
    write_params(one, {**TINY, "cv": {"folds": FOLDS, "seed": 42}, "training": {"epochs": 2, "num_workers": 0}})
    marked = set(re.findall(r"^([\w@-]+):$", run_dvc("status", cwd=one), flags=re.M))
    assert marked == {"train@0", "train@1", "model-card"}
    run_command("git", "checkout", "--", "params.yaml", cwd=one)

    # an experiment travels: saved on machine one (the ensemble as it is), pushed, pulled and
    # applied on machine two
    run_dvc("exp", "save", "--name", "ensemble", cwd=one)
    # skinlesion compare finds the experiment by the name dvc exp show gives it: the same models, no difference
    result = cli("compare", "ensemble", ".", "--resamples", "100", "--json", cwd=one)
    assert result.returncode == 0, result.stderr
    test = json.loads(result.stdout)[0]["sets"]["test"]
    assert test["balanced_accuracy"]["difference"] == 0 and test["mcnemar"]["p_value"] == 1.0
    run_dvc("exp", "push", "origin", "ensemble", cwd=one)
    run_dvc("exp", "pull", "origin", "ensemble", cwd=two)
    run_dvc("exp", "apply", "ensemble", cwd=two)
    run_dvc("pull", cwd=two)
    assert (two / "models" / "model.pt").read_bytes() == (one / "models" / "model.pt").read_bytes()
    assert (two / "metrics" / "eval.json").read_text() == (one / "metrics" / "eval.json").read_text()
