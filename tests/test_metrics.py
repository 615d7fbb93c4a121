import numpy as np
import pytest
from sklearn import metrics as sk

from stages.metrics import classification_report
from stages.params import CLASSES


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
    assert report["macro_f1"] == pytest.approx(sk.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
    precision, recall, f1, support = sk.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    for k, name in enumerate(CLASSES):
        entry = report["per_class"][name]
        assert (entry["precision"], entry["recall"], entry["f1"], entry["support"]) == pytest.approx((precision[k], recall[k], f1[k], support[k]))
        if k == absent:
            assert entry["auc"] is None
        else:
            assert entry["auc"] == pytest.approx(sk.roc_auc_score(y_true == k, probabilities[:, k]))
    if absent is None:
        assert report["macro_auc"] == pytest.approx(sk.roc_auc_score(y_true, probabilities, multi_class="ovr", average="macro"))


def test_perfect_and_chance_predictions():
    y_true = np.repeat(np.arange(8), 10)
    assert classification_report(y_true, np.eye(8)[y_true], CLASSES)["balanced_accuracy"] == 1.0
    constant = np.tile(np.eye(8)[1], (80, 1))  # always NV
    report = classification_report(y_true, constant, CLASSES)
    assert report["balanced_accuracy"] == pytest.approx(1 / 8)
    assert report["accuracy"] == pytest.approx(1 / 8)
