"""What evaluate writes (skinlesion.evaluation.report), recomputed from small literal
predictions: the metrics, the predictions table, the curves, and eval.json's blocks; and the
committed reports written again byte for byte by their typed records."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, model_info
from sklearn.metrics import balanced_accuracy_score

from skinlesion.atomic import write_json
from skinlesion.classes import CLASSES
from skinlesion.data.split import lesion_groups
from skinlesion.evaluation.params import ScoringParams
from skinlesion.evaluation.report import (
    Scores,
    eval_metrics,
    evaluation_report,
    predictions_table,
    write_curves,
)
from skinlesion.evaluation.report_schema import (
    EvalReport,
    ExternalCounts,
    ExternalReport,
    FoldEnsemble,
    OverlapExcluded,
    SingleModel,
)
from skinlesion.model.unknown import unknown_scores

PARAMS = ScoringParams(
    batch_size=4, bootstrap_resamples=200, calibration_bins=5, seed=0, tta="none", subgroup_min_images=3
)
Y_TRUE = np.array([0, 0, 1, 1, 2, 2, 2, 5])
PREDICTED = np.array([0, 1, 1, 1, 2, 0, 2, 5])
CONFIDENCE = np.array([0.9, 0.6, 0.7, 0.95, 0.8, 0.4, 0.55, 0.99])


def _probabilities() -> np.ndarray:
    rows = np.tile(((1 - CONFIDENCE) / 7)[:, None], (1, len(CLASSES)))
    rows[np.arange(len(PREDICTED)), PREDICTED] = CONFIDENCE
    return rows


def _manifest() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image": [f"ISIC_{k}" for k in range(8)],
            "label": [CLASSES[k] for k in Y_TRUE],
            "lesion_id": ["a", "a", "b", "", "c", "c", "d", ""],
        }
    )


def test_the_report_leads_with_balanced_accuracy_and_its_interval():
    report = evaluation_report(_manifest(), Y_TRUE, _probabilities(), CLASSES, PARAMS, loss=0.5)
    written = report.model_dump()
    assert list(written)[:3] == ["balanced_accuracy", "balanced_accuracy_ci95_low", "balanced_accuracy_ci95_high"]
    assert list(written)[-3:] == ["subgroups", "loss", "tta"]  # no unknown_rate without a threshold
    assert report.balanced_accuracy == pytest.approx(balanced_accuracy_score(Y_TRUE, PREDICTED))
    assert report.balanced_accuracy_ci95_low <= report.balanced_accuracy <= report.balanced_accuracy_ci95_high
    assert report.accuracy == pytest.approx(np.mean(Y_TRUE == PREDICTED))
    assert report.per_class["BCC"].recall == pytest.approx(2 / 3)
    assert report.per_class["AK"].auc is None and written["per_class"]["AK"]["auc"] is None  # written as null


def test_the_predictions_table_has_one_row_per_image_and_its_probabilities():
    table = predictions_table(_manifest(), _probabilities(), list(CLASSES))
    assert list(table.columns) == ["image", "lesion", "label", "predicted", *(f"p_{name}" for name in CLASSES)]
    assert table["lesion"].tolist() == lesion_groups(_manifest()).tolist()  # what the bootstrap resamples
    assert table["predicted"].tolist() == [CLASSES[k] for k in PREDICTED]
    assert table["p_MEL"].tolist() == pytest.approx(_probabilities()[:, 0].round(6).tolist())
    recomputed = balanced_accuracy_score(table["label"], table["predicted"])
    assert recomputed == pytest.approx(balanced_accuracy_score(Y_TRUE, PREDICTED))


def test_curves_for_each_class_present_and_the_reliability_bins(tmp_path):
    write_curves(Y_TRUE, _probabilities(), CLASSES, 5, tmp_path)
    present = {CLASSES[k] for k in Y_TRUE}
    assert {path.name for path in tmp_path.glob("roc_*.csv")} == {f"roc_{name}.csv" for name in present}
    assert {path.name for path in tmp_path.glob("pr_*.csv")} == {f"pr_{name}.csv" for name in present}
    roc = pd.read_csv(tmp_path / "roc_MEL.csv")
    assert list(roc.columns) == ["fpr", "tpr"] and roc["tpr"].iloc[-1] == 1.0
    reliability = pd.read_csv(tmp_path / "reliability.csv")
    assert list(reliability.columns) == ["bin", "confidence", "accuracy", "count"]
    assert reliability["count"].sum() == len(Y_TRUE)


def test_eval_json_of_a_single_model_recomputes_the_unknown_rate_from_its_threshold():
    log_probabilities = np.log(_probabilities())
    described = SingleModel(epoch=3, val_balanced_accuracy=0.6, temperature=1.5, metadata=False)
    scores = Scores(log_probabilities, Y_TRUE, 0.75, described)
    info = model_info(unknown_threshold=0.35)
    metrics = eval_metrics(_manifest(), scores, info, PARAMS)
    written = metrics.model_dump()
    assert list(written) == ["test", "model"]
    assert metrics.test.loss == 0.75 and metrics.test.tta == "none"
    assert metrics.test.unknown_rate == pytest.approx(np.mean(unknown_scores(_probabilities()) > 0.35))
    assert metrics.test.unknown_rate == pytest.approx(3 / 8)  # confidences 0.6, 0.4 and 0.55
    expected = {"epoch": 3, "val_balanced_accuracy": 0.6, "temperature": 1.5, "metadata": False}
    assert written["model"] == expected | {"unknown_threshold": 0.35}
    without = eval_metrics(_manifest(), scores, model_info(), PARAMS).model_dump()
    assert "unknown_rate" not in without["test"] and without["model"] == expected


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_eval_json_of_the_fold_ensemble_adds_each_folds_figures():
    other = _probabilities()[:, ::-1]  # the second fold model predicts other classes
    folds_logs = np.log(np.stack([_probabilities(), other]))
    scores = Scores(folds_logs[0], Y_TRUE, 0.5, FoldEnsemble(folds=2, metadata=False), folds_logs)
    members = [model_info(epoch=1, val_balanced_accuracy=0.4), model_info(epoch=2, val_balanced_accuracy=0.5)]
    out_of_fold = {"images": 10, "balanced_accuracy": 0.5, "accuracy": 0.6}
    info = model_info(epoch=None, members=members, out_of_fold=out_of_fold)
    metrics = eval_metrics(_manifest(), scores, info, PARAMS)
    assert list(metrics.model_dump()) == ["test", "model", "cv"]
    assert metrics.model_dump()["model"] == {"folds": 2, "metadata": False}
    assert metrics.cv.folds["1"].epoch == 2
    per_fold = [balanced_accuracy_score(Y_TRUE, logs.argmax(axis=1)) for logs in folds_logs]
    assert per_fold[0] != per_fold[1]
    assert metrics.cv.folds["1"].test.balanced_accuracy == pytest.approx(per_fold[1])
    assert metrics.cv.test_mean.balanced_accuracy == pytest.approx(np.mean(per_fold))
    assert metrics.cv.test_std.balanced_accuracy == pytest.approx(np.std(per_fold, ddof=1))
    assert metrics.cv.out_of_fold.model_dump() == out_of_fold


def test_the_committed_eval_json_is_written_again_byte_for_byte(tmp_path):
    """Read into the record and written as evaluate writes it: the same keys, order and values,
    so `dvc metrics diff` lines up with the committed figures."""
    committed = REPO / "metrics" / "eval.json"
    EvalReport.read(committed).write(tmp_path / "eval.json")
    assert (tmp_path / "eval.json").read_bytes() == committed.read_bytes()
    for path in sorted((REPO / "metrics" / "external").glob("*.json")):
        ExternalReport.read(path).write(tmp_path / path.name)
        assert (tmp_path / path.name).read_bytes() == path.read_bytes()


def test_an_external_report_is_its_counts_then_the_test_figures(tmp_path):
    test = evaluation_report(_manifest(), Y_TRUE, _probabilities(), CLASSES, PARAMS, loss=0.5)
    counts = ExternalCounts(
        images_in_folder=10, overlap_excluded=OverlapExcluded(isic_id=1, lesion_id=1, pixels=0, total=2), skipped=0
    )
    report = ExternalReport.of(counts, test)
    report.write(tmp_path / "clinic.json")
    written = json.loads((tmp_path / "clinic.json").read_text())
    assert written == counts.model_dump() | test.model_dump()
    assert list(written)[:4] == ["images_in_folder", "overlap_excluded", "skipped", "balanced_accuracy"]
    assert ExternalReport.read(tmp_path / "clinic.json") == report
    write_json(tmp_path / "as_dict.json", written)  # what evaluate wrote before the records: the same bytes
    assert (tmp_path / "as_dict.json").read_bytes() == (tmp_path / "clinic.json").read_bytes()
