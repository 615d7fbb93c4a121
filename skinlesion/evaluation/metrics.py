"""Classification metrics from true labels and predicted probabilities.

Balanced accuracy (mean per-class recall, ISIC's official metric) is the headline. The
per-class precision, recall and F1, the ROC and precision-recall curves and the AUC are
scikit-learn's. Balanced accuracy averages recall over the classes present in `y_true`, as
scikit-learn's does; it is computed here from one confusion matrix because the bootstrap
calls it a thousand times and scikit-learn's checks make that several times slower.
Macro-F1 averages over all classes (an empty class scores 0); AUC is one class against the
rest, undefined (None) for a class absent from `y_true`; macro_auc gives the same macro AUC
from ranks, fast enough for a bootstrap.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

# scipy and scikit-learn are imported where they are used: the train stage needs only balanced
# accuracy, and importing them cost each training process about 0.7 s


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts: row = true class, column = predicted class."""
    return np.bincount(num_classes * np.asarray(y_true) + np.asarray(y_pred), minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


def recalls(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Recall of each class, NaN for a class that does not occur in `y_true`."""
    matrix = confusion(y_true, y_pred, num_classes)
    support = matrix.sum(axis=1)
    return np.divide(np.diag(matrix), support, out=np.full(num_classes, np.nan), where=support > 0)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None) -> float:
    """Mean recall over the classes that occur in `y_true` (so any `num_classes` above the largest
    label gives the same figure; None: just enough for the labels)."""
    if num_classes is None:
        num_classes = int(max(np.max(y_true, initial=0), np.max(y_pred, initial=0))) + 1
    values = recalls(y_true, y_pred, num_classes)
    return float(values[~np.isnan(values)].mean())


def classification_report(
    y_true: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...], calibration_bins: int = 15
) -> dict:
    """Headline and per-class metrics.

    y_true: (N,) class indices; probabilities: (N, C) rows summing to 1.
    Returns a nested dict with stable keys (DVC shows them as `per_class.MEL.recall`, ...).
    """
    y_true = np.asarray(y_true)
    y_pred = probabilities.argmax(axis=1)
    matrix = confusion(y_true, y_pred, len(classes))
    true_positive = np.diag(matrix).astype(float)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=range(len(classes)), zero_division=0.0
    )
    auc = [
        float(roc_auc_score(y_true == k, probabilities[:, k])) if 0 < support[k] < len(y_true) else None
        for k in range(len(classes))
    ]
    defined_auc = [value for value in auc if value is not None]
    negatives = len(y_true) - support
    specificity = _ratio(negatives - (predicted - true_positive), negatives)
    return {
        "balanced_accuracy": balanced_accuracy(y_true, y_pred, len(classes)),
        "accuracy": float(true_positive.sum() / len(y_true)),
        "macro_f1": float(f1.mean()),
        "weighted_f1": float((f1 * support).sum() / support.sum()),
        "macro_auc": float(np.mean(defined_auc)) if defined_auc else None,
        "ece": expected_calibration_error(y_true, probabilities, calibration_bins),
        "images": int(len(y_true)),
        "per_class": {
            name: {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "specificity": float(specificity[k]),
                "f1": float(f1[k]),
                "auc": auc[k],
                "support": int(support[k]),
            }
            for k, name in enumerate(classes)
        },
    }


def reliability(y_true: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> list[dict]:
    """Per equal-width confidence bin (top-class probability): mean confidence, accuracy, count.

    Empty bins are left out. This is the data of a reliability diagram.
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(y_true)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        if members.any():
            rows.append(
                {
                    "bin": b,
                    "confidence": float(confidence[members].mean()),
                    "accuracy": float(correct[members].mean()),
                    "count": int(members.sum()),
                }
            )
    return rows


def expected_calibration_error(y_true: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> float:
    """Sum over confidence bins of (bin share) x |accuracy - mean confidence| (Guo et al., 2017)."""
    total = len(y_true)
    return float(
        sum(
            row["count"] / total * abs(row["accuracy"] - row["confidence"])
            for row in reliability(y_true, probabilities, bins)
        )
    )


def lesion_resamples(groups: np.ndarray, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """`resamples` bootstrap resamples of the images, as row indices, drawing whole groups with
    replacement (`groups`: one id per image). Images of one lesion are not independent, so a
    test set is resampled by lesion (an image without a lesion id is its own group)."""
    rng = np.random.default_rng(seed)
    _, group_index = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(group_index == g) for g in range(group_index.max() + 1)]
    for _ in range(resamples):
        yield np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])


def percentile_interval(scores: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central `level` percentile interval of bootstrap `scores`."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(scores, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_interval(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: np.ndarray,
    num_classes: int,
    *,
    resamples: int,
    seed: int,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of balanced accuracy, resampling whole lesions
    (lesion_resamples)."""
    drawn = lesion_resamples(groups, resamples, seed)
    scores = np.array([balanced_accuracy(y_true[rows], y_pred[rows], num_classes) for rows in drawn])
    return percentile_interval(scores, level)


def macro_auc(y_true: np.ndarray, probabilities: np.ndarray) -> float | None:
    """Mean one-vs-rest AUC over the classes that occur in `y_true` but not in every row
    (None when there is none): roc_auc_score's, from ranks (Mann-Whitney U, ties averaged),
    fast enough for a bootstrap."""
    from scipy.stats import rankdata

    ranks = rankdata(probabilities, axis=0)
    scores = []
    for k in range(probabilities.shape[1]):
        positive = y_true == k
        count = int(positive.sum())
        if 0 < count < len(y_true):
            scores.append((ranks[positive, k].sum() - count * (count + 1) / 2) / (count * (len(y_true) - count)))
    return float(np.mean(scores)) if scores else None


def one_vs_rest_curves(
    y_true: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...]
) -> dict[str, dict[str, np.ndarray]]:
    """Per class present in `y_true`: ROC (fpr, tpr) and precision-recall (recall, precision)."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    curves = {}
    for k, name in enumerate(classes):
        positive = np.asarray(y_true) == k
        if 0 < positive.sum() < len(positive):
            fpr, tpr, _ = roc_curve(positive, probabilities[:, k])
            precision, recall, _ = precision_recall_curve(positive, probabilities[:, k])
            curves[name] = {"fpr": fpr, "tpr": tpr, "recall": recall, "precision": precision}
    return curves
