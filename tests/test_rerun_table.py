"""Each row of the README's rerun table: changing that param marks exactly those stages."""

import re

import pytest
import yaml

from conftest import REPO, TINY, copy_repo, run_dvc

NEW_VALUES = {
    "sample.seed": 7,
    "data.root": "data/elsewhere",
    "prepare.image_size": 48,
    "prepare.seed": 7,
    "sampling.kmeans_clusters": 2,
    "sampling.minority_target": 10,
    "augmentation.rotation_range": 10,
    "model.name": "resnet50",
    "training.epochs": 2,
    "training.device": "cpu",
    "evaluate.bootstrap_resamples": 50,
    "gradcam.wrong_per_class": 0,
}


def readme_rows() -> dict[str, set[str]]:
    text = (REPO / "README.md").read_text()
    table = text[text.index("| you change (for example) |") :].split("\n\n")[0]
    rows = re.findall(r"^\| `([\w.]+)` \| ([^|]+) \|", table, flags=re.M)
    return {key: {stage.strip() for stage in stages.split(",")} for key, stages in rows}


@pytest.fixture(scope="module")
def ran_repo(tmp_path_factory):
    repo = copy_repo(tmp_path_factory.mktemp("rerun") / "repo", TINY)
    run_dvc("repro", cwd=repo)
    return repo


def test_the_table_and_this_test_cover_the_same_params():
    assert set(readme_rows()) == set(NEW_VALUES)


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(NEW_VALUES))
def test_changing_a_param_marks_exactly_its_stages(ran_repo, key):
    section, name = key.split(".")
    original = (ran_repo / "params.yaml").read_text()
    try:
        changed = yaml.safe_load(original)
        changed[section][name] = NEW_VALUES[key]
        (ran_repo / "params.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
        status = run_dvc("status", cwd=ran_repo)
        marked = set(re.findall(r"^([\w-]+):$", status, flags=re.M))
        assert marked == readme_rows()[key]
    finally:
        (ran_repo / "params.yaml").write_text(original)
