"""A data root of one's own classes (docs/own-data.md): the class list is the ground truth's
columns, the metadata CSV is optional, and every stage and predict follow the data's classes.
The three-class root runs through every stage in tests/test_distributed.py."""

import pytest
from conftest import ALL_STAGES, HAM10000, THREE, check_own_classes, copy_repo, own_data_params, run_dvc, stages_run

from skinlesion.data.isic import ground_truth_classes, read_labels


def test_the_classes_are_the_ground_truth_columns(seven_class_root, three_class_root):
    assert ground_truth_classes(seven_class_root) == HAM10000
    assert set(read_labels(seven_class_root)["label"]) == set(HAM10000)
    labels = read_labels(three_class_root)  # no metadata CSV: every value missing, each image its own lesion
    assert ground_truth_classes(three_class_root) == THREE and set(labels["label"]) == set(THREE)
    assert (labels["lesion_id"] == "").all() and (labels["group"] == labels["image"]).all()
    assert (labels["age_approx"] == "").all()


@pytest.mark.slow
def test_a_seven_class_root_runs_every_stage_and_predict(tmp_path, seven_class_root):
    repo = copy_repo(tmp_path / "repo", own_data_params(seven_class_root))
    assert stages_run(run_dvc("repro", cwd=repo)) == ALL_STAGES
    check_own_classes(repo, seven_class_root, HAM10000)
