"""What evaluate writes (skinlesion.evaluation.report), recomputed from small literal
predictions: the metrics, the predictions table, the curves, and eval.json's blocks."""

import numpy as np
import pandas as pd
import pytest
from conftest import model_info
from sklearn.metrics import balanced_accuracy_score

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
    report = evaluation_report(_manifest(), Y_TRUE, _probabilities(), CLASSES, PARAMS)
    assert list(report)[:3] == ["balanced_accuracy", "balanced_accuracy_ci95_low", "balanced_accuracy_ci95_high"]
    assert report["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(Y_TRUE, PREDICTED))
    assert report["balanced_accuracy_ci95_low"] <= report["balanced_accuracy"] <= report["balanced_accuracy_ci95_high"]
    assert report["accuracy"] == pytest.approx(np.mean(Y_TRUE == PREDICTED))
    assert report["per_class"]["BCC"]["recall"] == pytest.approx(2 / 3)


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
    scores = Scores(log_probabilities, Y_TRUE, 0.75, {"epoch": 3, "temperature": 1.5})
    info = model_info(unknown_threshold=0.35)
    metrics = eval_metrics(_manifest(), scores, info, PARAMS)
    assert set(metrics) == {"test", "model"}
    assert metrics["test"]["loss"] == 0.75 and metrics["test"]["tta"] == "none"
    assert metrics["test"]["unknown_rate"] == pytest.approx(np.mean(unknown_scores(_probabilities()) > 0.35))
    assert metrics["test"]["unknown_rate"] == pytest.approx(3 / 8)  # confidences 0.6, 0.4 and 0.55
    assert metrics["model"] == {"epoch": 3, "temperature": 1.5, "unknown_threshold": 0.35}
    without = eval_metrics(_manifest(), scores, model_info(), PARAMS)
    assert "unknown_rate" not in without["test"] and "unknown_threshold" not in without["model"]


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_eval_json_of_the_fold_ensemble_adds_each_folds_figures():
    other = _probabilities()[:, ::-1]  # the second fold model predicts other classes
    folds_logs = np.log(np.stack([_probabilities(), other]))
    scores = Scores(folds_logs[0], Y_TRUE, 0.5, {"folds": 2}, folds_logs)
    members = [model_info(epoch=1, val_balanced_accuracy=0.4), model_info(epoch=2, val_balanced_accuracy=0.5)]
    info = model_info(epoch=None, members=members, out_of_fold={"images": 10})
    metrics = eval_metrics(_manifest(), scores, info, PARAMS)
    assert metrics["cv"]["folds"]["1"]["epoch"] == 2
    per_fold = [balanced_accuracy_score(Y_TRUE, logs.argmax(axis=1)) for logs in folds_logs]
    assert per_fold[0] != per_fold[1]
    assert metrics["cv"]["folds"]["1"]["test"]["balanced_accuracy"] == pytest.approx(per_fold[1])
    assert metrics["cv"]["test_mean"]["balanced_accuracy"] == pytest.approx(np.mean(per_fold))
    assert metrics["cv"]["test_std"]["balanced_accuracy"] == pytest.approx(np.std(per_fold, ddof=1))
