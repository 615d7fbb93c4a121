"""skinlesion compare: paired intervals and McNemar's test on the same test images, for two runs
or two groups of seeds, read from folders, git revisions and experiments."""

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run_dvc

from skinlesion.classes import CLASSES
from skinlesion.cli import main as skinlesion
from skinlesion.errors import DataError
from skinlesion.evaluation.compare import Run, compare
from skinlesion.evaluation.metrics import classification_report, macro_auc

IMAGES = 800


def _table(right: np.ndarray, seed: int = 0, labels: np.ndarray | None = None) -> pd.DataFrame:
    """Predictions of IMAGES images (two per lesion, every class): right where `right` is."""
    rng = np.random.default_rng(seed)
    labels = np.arange(IMAGES) % len(CLASSES) if labels is None else labels
    predicted = np.where(right, labels, (labels + 1 + rng.integers(0, 6, IMAGES)) % len(CLASSES))
    probabilities = rng.dirichlet(np.ones(len(CLASSES)), IMAGES) * 0.3
    probabilities[np.arange(IMAGES), predicted] += 0.7
    table = pd.DataFrame(
        {"image": [f"ISIC_{k:07d}" for k in range(IMAGES)], "lesion": [f"L{k // 2}" for k in range(IMAGES)]}
    )
    table["label"] = np.asarray(CLASSES)[labels]
    for k, name in enumerate(CLASSES):
        table[f"p_{name}"] = probabilities[:, k]
    return table


def _right(count: int, seed: int = 0) -> np.ndarray:
    right = np.zeros(IMAGES, bool)
    right[np.random.default_rng(seed).permutation(IMAGES)[:count]] = True
    return right


def test_sixty_more_images_right_is_a_finding_and_swapping_the_sides_flips_its_sign():
    a_right = _right(300)
    b_right = a_right.copy()
    b_right[np.flatnonzero(~a_right)[:60]] = True  # B: A's 300 and 60 more
    a, b = Run("A", _table(a_right, 1)), Run("B", _table(b_right, 2))
    report = compare([a], [b], resamples=500)
    shown = report["balanced_accuracy"]
    assert shown["difference"] > 0 and shown["ci95"][0] > 0 and shown["excludes_zero"]
    assert report["mcnemar"] == {"only_a_right": 0, "only_b_right": 60, "p_value": pytest.approx(2 * 0.5**60)}
    assert report["images"] == IMAGES and report["lesions"] == IMAGES // 2

    swapped = compare([b], [a], resamples=500)
    assert swapped["balanced_accuracy"]["difference"] == -shown["difference"]
    assert swapped["balanced_accuracy"]["ci95"] == pytest.approx([-shown["ci95"][1], -shown["ci95"][0]], abs=1e-4)
    assert swapped["mcnemar"]["only_a_right"] == 60 and swapped["mcnemar"]["p_value"] == report["mcnemar"]["p_value"]
    recall = report["per_class_recall"]["MEL"]
    assert recall["images"] == IMAGES // len(CLASSES) and recall["difference"] == pytest.approx(
        recall["b"] - recall["a"]
    )


def test_identical_predictions_differ_by_zero_with_p_one_and_a_small_change_is_not_a_finding():
    table = _table(_right(400))
    same = compare([Run("A", table)], [Run("B", table.sample(frac=1, random_state=0))], resamples=200)  # any order
    assert same["balanced_accuracy"]["difference"] == 0 and same["balanced_accuracy"]["ci95"] == [0, 0]
    assert same["macro_auc"]["difference"] == 0 and same["mcnemar"]["p_value"] == 1.0
    assert not same["balanced_accuracy"]["excludes_zero"]
    a_right = _right(400)
    b_right = a_right.copy()
    b_right[np.flatnonzero(~a_right)[:3]] = True  # three more images right: within the noise
    small = compare([Run("A", _table(a_right, 1))], [Run("B", _table(b_right, 2))], resamples=500)
    assert small["balanced_accuracy"]["difference"] > 0 and not small["balanced_accuracy"]["excludes_zero"]
    assert small["mcnemar"]["p_value"] > 0.05


def test_groups_of_seeds_report_mean_and_spread_and_the_pooled_difference():
    a = [Run(f"a{seed}", _table(_right(300 + 20 * seed, seed), seed)) for seed in range(3)]
    b = [Run(f"b{seed}", _table(_right(420 + 20 * seed, 10 + seed), 10 + seed)) for seed in range(3)]
    report = compare(a, b, resamples=300)
    shown = report["balanced_accuracy"]
    assert len(shown["a"]["runs"]) == 3 and shown["a"]["sd"] > 0
    assert shown["a"]["mean"] == pytest.approx(np.mean(shown["a"]["runs"]), abs=1e-4)
    assert shown["difference"] == pytest.approx(shown["b"]["mean"] - shown["a"]["mean"], abs=1e-4)
    assert shown["excludes_zero"] and "mcnemar" not in report  # McNemar pairs one run with one


def test_runs_on_different_images_or_labels_are_refused_with_the_images_named():
    table = _table(_right(300))
    fewer = table.iloc[5:]
    with pytest.raises(DataError, match=r"5 only in A \(ISIC_0000000, ISIC_0000001, .*\)"):
        compare([Run("A", table)], [Run("B", fewer)])
    relabelled = table.copy()
    relabelled.loc[3, "label"] = "NV" if relabelled.loc[3, "label"] != "NV" else "MEL"
    with pytest.raises(DataError, match="label images differently \\(ISIC_0000003\\)"):
        compare([Run("A", table)], [Run("B", relabelled)])
    with pytest.raises(DataError, match="predicts"):
        compare([Run("A", table)], [Run("B", table.drop(columns="p_SCC"))])


def test_the_macro_auc_from_ranks_is_scikit_learns():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 8, 300)
    probabilities = rng.dirichlet(np.ones(8), 300).round(2)  # ties, averaged as scikit-learn does
    assert macro_auc(y_true, probabilities) == pytest.approx(
        classification_report(y_true, probabilities, CLASSES)["macro_auc"]
    )


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def _run_cli(args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        skinlesion(args)
    captured = capsys.readouterr()
    return exit_.value.code, captured.out + captured.err


def test_compare_reads_folders_git_revisions_and_experiments(tmp_path, capsys):
    repo = tmp_path / "repo"
    (repo / "eval").mkdir(parents=True)
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "ci@example.org")
    _git(repo, "config", "user.name", "ci")
    run_dvc("init", "-q", cwd=repo)
    a_right = _right(300)
    b_right = a_right | _right(500, 7)
    _table(a_right).to_csv(repo / "eval" / "predictions.csv", index=False)
    _git(repo, "add", "eval", ".dvc")
    _git(repo, "commit", "-qm", "A")
    _table(b_right, 3).to_csv(repo / "eval" / "predictions.csv", index=False)
    (repo / "eval" / "external" / "clinic").mkdir(parents=True)
    _table(b_right, 4).to_csv(repo / "eval" / "external" / "clinic" / "predictions.csv", index=False)
    _git(repo, "add", "eval")
    _git(repo, "commit", "-qm", "B")
    run_dvc("exp", "save", "-q", "--name", "better-exp", cwd=repo)  # B as an experiment

    code, out = _run_cli(
        ["compare", "HEAD~1", "better-exp", "--repo", str(repo), "--resamples", "200", "--json"], capsys
    )
    assert code == 0, out
    [result] = json.loads(out)
    assert result["a"] == ["HEAD~1"] and list(result["sets"]) == ["test"]  # the external set only in B
    assert result["sets"]["test"]["balanced_accuracy"]["excludes_zero"]

    code, out = _run_cli(["compare", "HEAD~1", ".", "--repo", str(repo), "--resamples", "200"], capsys)
    assert code == 0 and "test: 800 images of 400 lesions; A = HEAD~1; B = ." in out
    assert "balanced accuracy" in out and "B better" in out and "McNemar (exact)" in out

    code, out = _run_cli(["compare", ".", "better-exp", "--repo", str(repo), "--resamples", "50", "--markdown"], capsys)
    assert code == 0 and "**test:" in out and "**clinic:" in out and "| balanced accuracy |" in out

    code, out = _run_cli(
        ["compare", "--a", "HEAD~1", "--b", "better-*", ".", "--repo", str(repo), "--resamples", "50"], capsys
    )
    assert code == 0 and "B = better-exp, ." in out and "(2 runs)" in out

    code, out = _run_cli(["compare", "HEAD~1", "no-such-run", "--repo", str(repo)], capsys)
    assert code == 2 and "no-such-run: no folder with eval/, git revision or experiment of that name" in out
    code, out = _run_cli(["compare", "HEAD~1", "--b", ".", "--repo", str(repo)], capsys)
    assert code == 2 and "not both" in out


def test_a_glob_of_folders_in_another_repo_folder_is_found_from_anywhere(tmp_path, capsys, monkeypatch):
    """docs/real_data.md's `compare --repo benchmarks/results/... --a 'recipe-s*' --b 'metadata-s*'`,
    run from outside that folder."""
    predictions = tmp_path / "results" / "predictions"
    for k, name in enumerate(["recipe-s42", "recipe-s43", "metadata-s42", "metadata-s43"]):
        (predictions / name / "eval").mkdir(parents=True)
        _table(_right(300 + 100 * (k // 2), k), k).to_csv(predictions / name / "eval" / "predictions.csv", index=False)
    monkeypatch.chdir(tmp_path)
    args = ["--a", "recipe-s*", "--b", "metadata-s*", "--resamples", "50", "--json"]
    for repo in (str(predictions), "results/predictions"):
        code, out = _run_cli(["compare", "--repo", repo, *args], capsys)
        assert code == 0, out
        [result] = json.loads(out)
        assert result["a"] == ["recipe-s42", "recipe-s43"] and result["b"] == ["metadata-s42", "metadata-s43"]
        assert result["params"] is None  # folders of predictions only: nothing to say about params
    monkeypatch.chdir(predictions)
    code, out = _run_cli(["compare", *args], capsys)
    assert code == 0 and json.loads(out)[0]["a"] == ["recipe-s42", "recipe-s43"]


def _commit_run(repo, params: dict, right: np.ndarray, seed: int) -> None:
    """A run as a commit: params.yaml and the predictions it scored."""
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    (repo / "eval").mkdir(exist_ok=True)
    _table(right, seed).to_csv(repo / "eval" / "predictions.csv", index=False)
    _git(repo, "add", "params.yaml", "eval")
    _git(repo, "commit", "-qm", f"run {seed}")


def test_compare_names_the_params_that_differ_and_warns_of_a_side_that_is_not_one_setting(tmp_path, capsys, caplog):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "ci@example.org")
    _git(repo, "config", "user.name", "ci")
    runs = [  # HEAD~3 .. HEAD
        {"training": {"epochs": 3, "seed": 42}, "model": {"weights": "none"}},
        {"training": {"epochs": 3, "seed": 43}, "model": {"weights": "none"}},
        {"training": {"epochs": 5, "seed": 42}, "model": {"weights": "none"}, "sampling": {"oversample": True}},
        {"training": {"epochs": 5, "seed": 43}, "model": {"weights": "imagenet"}},
    ]
    for k, params in enumerate(runs):
        _commit_run(repo, params, _right(300 + 20 * k, k), k)

    code, out = _run_cli(["compare", "HEAD~3", "HEAD~1", "--repo", str(repo), "--resamples", "50"], capsys)
    assert code == 0, out
    assert "params, A -> B:\n  sampling.oversample: (absent) -> true\n  training.epochs: 3 -> 5\n" in out
    assert "training.seed" not in out and "model.weights" not in out and "not one setting" not in out

    code, out = _run_cli(
        ["compare", "--a", "HEAD~3", "HEAD~2", "--b", "HEAD~1", "HEAD", "--repo", str(repo), "--resamples", "50"],
        capsys,
    )
    assert code == 0, out
    assert '  model.weights: "none" -> "none", "imagenet"\n' in out and "  training.epochs: 3 -> 5\n" in out
    assert "training.seed" not in out  # 42, 43 on both sides: the seeds of one setting
    assert '  within B: model.weights: "none", "imagenet"\n' in out
    warned = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert warned == ['side B is not one setting: its runs differ in model.weights ("none", "imagenet"); '
                      "sampling.oversample (true, (absent))"]  # fmt: skip

    code, out = _run_cli(["compare", "HEAD~3", "HEAD~2", "--repo", str(repo), "--resamples", "50", "--json"], capsys)
    assert json.loads(out)[0]["params"] == {
        "between": {"training.seed": [["42"], ["43"]]},
        "within": {"a": {}, "b": {}},
        "unknown": [],
    }
