"""Classification metrics from true labels and predicted probabilities.

Balanced accuracy (mean per-class recall, ISIC's official metric) is the headline. The
definitions are scikit-learn's: balanced accuracy averages recall over the classes present
in `y_true`; macro-F1 averages over all classes (an empty class scores 0); AUC is one
class against the rest, undefined (None) for a class absent from `y_true`.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts: row = true class, column = predicted class."""
    return np.bincount(num_classes * np.asarray(y_true) + np.asarray(y_pred), minlength=num_classes**2).reshape(num_classes, num_classes)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Mean recall over the classes that occur in `y_true`."""
    matrix = confusion(y_true, y_pred, num_classes)
    support = matrix.sum(axis=1)
    return float((np.diag(matrix)[support > 0] / support[support > 0]).mean())


def classification_report(y_true: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...]) -> dict:
    """Headline and per-class metrics.

    y_true: (N,) class indices; probabilities: (N, C) rows summing to 1.
    Returns a nested dict with stable keys (DVC shows them as `per_class.MEL.recall`, ...).
    """
    y_true = np.asarray(y_true)
    y_pred = probabilities.argmax(axis=1)
    matrix = confusion(y_true, y_pred, len(classes))
    true_positive = np.diag(matrix).astype(float)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    precision = _ratio(true_positive, predicted)
    recall = _ratio(true_positive, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    auc = [
        float(roc_auc_score(y_true == k, probabilities[:, k])) if 0 < support[k] < len(y_true) else None
        for k in range(len(classes))
    ]
    defined_auc = [value for value in auc if value is not None]
    return {
        "balanced_accuracy": balanced_accuracy(y_true, y_pred, len(classes)),
        "accuracy": float(true_positive.sum() / len(y_true)),
        "macro_f1": float(f1.mean()),
        "macro_auc": float(np.mean(defined_auc)) if defined_auc else None,
        "images": int(len(y_true)),
        "per_class": {
            name: {"precision": float(precision[k]), "recall": float(recall[k]), "f1": float(f1[k]), "auc": auc[k], "support": int(support[k])}
            for k, name in enumerate(classes)
        },
    }
