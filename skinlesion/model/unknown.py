"""The unknown score, which says how unlike every training class an image looks, and the
threshold above which an image is called unknown. NumPy only: predict through ONNX Runtime
scores images without torch."""

from __future__ import annotations

import numpy as np

# the share of validation images (all of known classes) that the unknown threshold keeps known
KEEP_KNOWN = 0.95


def unknown_scores(probabilities: np.ndarray) -> np.ndarray:
    """Per image (rows of class probabilities), how unlike every training class it looks: one
    minus its top class probability (the maximum softmax probability baseline of Hendrycks
    and Gimpel, 2017), in [0, 1 - 1/C]."""
    return 1.0 - probabilities.max(axis=1)


def unknown_threshold(scores: np.ndarray, keep: float = KEEP_KNOWN) -> float:
    """The lowest unknown score at or below which at least `keep` of `scores` (of validation
    images, all of known classes) lie: an image scoring above it is called unknown."""
    return float(np.quantile(scores, keep, method="inverted_cdf"))
