"""A data root of one's own classes (docs/own-data.md): the class list is the ground truth's
columns, the metadata CSV is optional, and every stage and predict follow the data's classes."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import ALL_STAGES, TINY, copy_repo, run_cli, run_dvc, stages_run

from skinlesion.data.isic import GROUND_TRUTH_CSV, IMAGE_DIR, METADATA_CSV, ground_truth_classes, read_labels
from skinlesion.data.synthetic import SampleParams, plan_sample, write_sample
from skinlesion.model.checkpoint import load_checkpoint

HAM10000 = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]  # HAM10000's seven, in ISIC's one-hot layout
THREE = ["MEL", "NV", "BCC"]


def _subset(source: Path, target: Path, classes: list[str], *, rename: dict[str, str], metadata: bool) -> Path:
    """`source`'s images of `classes` (named after `rename`) in a data root at `target`, the
    ground truth in the ISIC one-hot layout without UNK; the metadata CSV only with `metadata`."""
    truth = pd.read_csv(source / GROUND_TRUTH_CSV, dtype=str).rename(columns=rename)
    keep = truth[classes].astype(float).sum(axis=1) == 1.0
    truth = truth.loc[keep, ["image", *classes]]
    (target / IMAGE_DIR).mkdir(parents=True)
    truth.to_csv(target / GROUND_TRUTH_CSV, index=False)
    for image in truth["image"]:
        shutil.copy(source / IMAGE_DIR / f"{image}.jpg", target / IMAGE_DIR)
    if metadata:
        meta = pd.read_csv(source / METADATA_CSV, dtype=str, keep_default_na=False)
        meta[meta["image"].isin(truth["image"])].to_csv(target / METADATA_CSV, index=False)
    return target


@pytest.fixture(scope="module")
def seven_class_root(tmp_path_factory, shared_data) -> Path:
    """The real mini set's labels without SCC, AK named as HAM10000 names it (AKIEC)."""
    source = shared_data / "isic2019-mini"
    return _subset(source, tmp_path_factory.mktemp("ham7"), HAM10000, rename={"AK": "AKIEC"}, metadata=True)


@pytest.fixture(scope="module")
def three_class_root(tmp_path_factory) -> Path:
    """MEL, NV and BCC of a small synthetic sample, with no metadata CSV at all."""
    folder = tmp_path_factory.mktemp("three")
    write_sample(plan_sample(SampleParams(num_images=90, min_per_class=10, scale=0.1, seed=3)), 0.1, folder / "sample")
    return _subset(folder / "sample", folder / "root", THREE, rename={}, metadata=False)


def test_the_classes_are_the_ground_truth_columns(seven_class_root, three_class_root):
    assert ground_truth_classes(seven_class_root) == tuple(HAM10000)
    assert set(read_labels(seven_class_root)["label"]) == set(HAM10000)
    labels = read_labels(three_class_root)  # no metadata CSV: every value missing, each image its own lesion
    assert ground_truth_classes(three_class_root) == tuple(THREE) and set(labels["label"]) == set(THREE)
    assert (labels["lesion_id"] == "").all() and (labels["group"] == labels["image"]).all()
    assert (labels["age_approx"] == "").all()


@pytest.mark.slow
@pytest.mark.parametrize("classes", [THREE, HAM10000], ids=["3-class", "7-class"])
def test_a_data_root_of_its_own_classes_runs_every_stage_and_predict(
    tmp_path, classes, seven_class_root, three_class_root
):
    root = three_class_root if classes == THREE else seven_class_root
    tiny = {
        **TINY,
        "data": {"root": str(root)},
        "prepare": {"image_size": 32, "workers": 1},
        "model": {"name": "efficientnet_b0"},
    }
    repo = copy_repo(tmp_path / "repo", tiny)
    assert stages_run(run_dvc("repro", cwd=repo)) == ALL_STAGES

    assert json.loads((repo / "data" / "prepared" / "classes.json").read_text()) == classes
    assert load_checkpoint(repo / "models" / "model.pt")[1].classes == tuple(classes)
    report = json.loads((repo / "metrics" / "eval.json").read_text())
    assert list(report["test"]["per_class"]) == classes
    counts = json.loads((repo / "metrics" / "data.json").read_text())
    assert list(counts["train"]) == [*classes, "total"]

    image = next((root / IMAGE_DIR).iterdir())
    result = run_cli("predict", str(image), "--model", "models/model.pt", "--out", "out.csv", cwd=repo)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(repo / "out.csv")
    assert [c for c in table.columns if c.startswith("p_")] == [f"p_{name}" for name in classes]
    assert table["predicted"].iloc[0] in classes
