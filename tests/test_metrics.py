import numpy as np
import pytest
from sklearn import metrics as sk

from skinlesion.classes import CLASSES
from skinlesion.evaluation.metrics import (
    bootstrap_interval,
    classification_report,
    expected_calibration_error,
    one_vs_rest_curves,
    recalls,
    reliability,
)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed, absent", [(0, None), (1, 5)])
def test_metrics_agree_with_scikit_learn(seed, absent):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 8, 300)
    if absent is not None:
        y_true[y_true == absent] = 0  # a class missing from the test labels
    logits = rng.normal(size=(300, 8)) + 2.0 * np.eye(8)[y_true] * rng.random((300, 1))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y_pred = probabilities.argmax(axis=1)
    report = classification_report(y_true, probabilities, CLASSES)
    labels = list(range(8))

    assert report["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y_true, y_pred))
    assert report["accuracy"] == pytest.approx(sk.accuracy_score(y_true, y_pred))
    assert report["macro_f1"] == pytest.approx(
        sk.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    )
    assert report["weighted_f1"] == pytest.approx(
        sk.f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
    )
    matrix = sk.confusion_matrix(y_true, y_pred, labels=labels)
    precision, recall, f1, support = sk.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    own = recalls(y_true, y_pred, 8)  # the recall compare and subgroups use: NaN for an absent class
    present = support > 0
    assert list(np.isnan(own)) == list(~present) and own[present] == pytest.approx(recall[present])
    for k, name in enumerate(CLASSES):
        entry = report["per_class"][name]
        assert (entry["precision"], entry["recall"], entry["f1"], entry["support"]) == pytest.approx(
            (precision[k], recall[k], f1[k], support[k])
        )
        negatives = np.delete(np.delete(matrix, k, axis=0), k, axis=1).sum()  # true negatives of class k
        assert entry["specificity"] == pytest.approx(negatives / (len(y_true) - support[k]))
        if k == absent:
            assert entry["auc"] is None
        else:
            assert entry["auc"] == pytest.approx(sk.roc_auc_score(y_true == k, probabilities[:, k]))
    if absent is None:
        assert report["macro_auc"] == pytest.approx(
            sk.roc_auc_score(y_true, probabilities, multi_class="ovr", average="macro")
        )


def test_perfect_and_chance_predictions():
    y_true = np.repeat(np.arange(8), 10)
    assert classification_report(y_true, np.eye(8)[y_true], CLASSES)["balanced_accuracy"] == 1.0
    constant = np.tile(np.eye(8)[1], (80, 1))  # always NV
    report = classification_report(y_true, constant, CLASSES)
    assert report["balanced_accuracy"] == pytest.approx(1 / 8)
    assert report["accuracy"] == pytest.approx(1 / 8)


def test_calibration_error_and_reliability_bins():
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    # confidence 0.8 on every image, right on 8 of 10: perfectly calibrated
    probabilities = np.tile([0.8, 0.2] + [0.0] * 6, (10, 1))
    probabilities[4:6] = [0.8, 0.2] + [0.0] * 6  # wrong on two class-1 images
    probabilities[6:] = [0.2, 0.8] + [0.0] * 6
    assert expected_calibration_error(y_true, probabilities, bins=10) == pytest.approx(0.0, abs=1e-12)
    overconfident = np.tile([1.0] + [0.0] * 7, (10, 1))  # certain, right on 4 of 10
    assert expected_calibration_error(y_true, overconfident, bins=10) == pytest.approx(0.6)
    assert reliability(y_true, overconfident, bins=10) == [{"bin": 9, "confidence": 1.0, "accuracy": 0.4, "count": 10}]


def test_bootstrap_interval_resamples_lesions_and_is_seeded():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 8, 400)
    y_pred = np.where(rng.random(400) < 0.7, y_true, rng.integers(0, 8, 400))
    groups = np.arange(400) // 2  # two images per lesion
    low, high = bootstrap_interval(y_true, y_pred, groups, 8, resamples=300, seed=1)
    point = sk.balanced_accuracy_score(y_true, y_pred)
    assert low < point < high and high - low < 0.2
    assert (low, high) == bootstrap_interval(y_true, y_pred, groups, 8, resamples=300, seed=1)
    perfect = bootstrap_interval(y_true, y_true, groups, 8, resamples=50, seed=1)
    assert perfect == (1.0, 1.0)


def test_one_vs_rest_curves_skip_absent_classes():
    y_true = np.array([0, 0, 1, 1, 2])
    probabilities = np.eye(8)[[0, 1, 1, 1, 2]] * 0.9 + 0.1 / 8
    curves = one_vs_rest_curves(y_true, probabilities, CLASSES)
    assert set(curves) == {"MEL", "NV", "BCC"}
    fpr, tpr = curves["MEL"]["fpr"], curves["MEL"]["tpr"]
    assert np.trapezoid(tpr, fpr) == pytest.approx(sk.roc_auc_score(y_true == 0, probabilities[:, 0]))
