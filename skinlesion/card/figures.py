"""The card's figures, drawn with matplotlib into PNG bytes: the confusion matrix, the ROC
curves and the reliability diagram; and the one figure computed here, the calibration of the
test predictions before the temperature."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from skinlesion.card.blocks import number
from skinlesion.evaluation.metrics import expected_calibration_error, reliability


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes, without the matplotlib version in its metadata (the same
    inputs give the same bytes on every machine with the same fonts)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def confusion_figure(matrix: np.ndarray, classes: list[str]) -> bytes:
    """The (C, C) confusion counts (row = true class) as a heat map with the counts written in."""
    fig = Figure(figsize=(5.2, 4.4), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    for (row, column), count in np.ndenumerate(matrix):
        dark = count > matrix.max() / 2
        ax.text(column, row, str(count), ha="center", va="center", fontsize=8, color="white" if dark else "black")
    fig.colorbar(image, ax=ax, label="test images")
    return png_bytes(fig)


def roc_figure(roc: dict[str, pd.DataFrame], auc: dict[str, float | None]) -> bytes:
    """One-vs-rest ROC curves (fpr, tpr per class), each labelled with its AUC."""
    fig = Figure(figsize=(5.2, 4.4), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    for name, curve in roc.items():
        ax.plot(curve["fpr"], curve["tpr"], linewidth=1.4, label=f"{name} (AUC {number(auc.get(name))})")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (recall)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right", fontsize=8)
    return png_bytes(fig)


def reliability_figure(after: pd.DataFrame, before: pd.DataFrame | None) -> bytes:
    """Accuracy against mean confidence per bin (confidence, accuracy columns): the reported
    probabilities and, when the model has a temperature, those before it."""
    fig = Figure(figsize=(5.2, 4.4), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8, label="perfect calibration")
    label = "with the temperature" if before is not None else "test probabilities"
    ax.plot(after["confidence"], after["accuracy"], marker="o", label=label)
    if before is not None:
        ax.plot(before["confidence"], before["accuracy"], marker="s", linestyle=":", label="before the temperature")
    ax.set_xlabel("mean confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="upper left", fontsize=8)
    return png_bytes(fig)


# ---- calibration before the temperature -------------------------------------------------------


def class_indices(predictions: pd.DataFrame, column: str, classes: list[str]) -> np.ndarray:
    """(N,) the index in `classes` of each row's `column` (label or predicted)."""
    return predictions[column].map({name: k for k, name in enumerate(classes)}).to_numpy()


def without_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """(N, C) the probabilities at temperature 1 of probabilities (N, C) at `temperature`:
    softmax(T log p) row-wise, as log p is the logits divided by T, less a per-row constant."""
    with np.errstate(divide="ignore"):  # a probability rounded to 0 has logit -inf: weight 0
        scaled = temperature * np.log(probabilities)
    exponentials = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def before_temperature(
    predictions: pd.DataFrame, classes: list[str], temperature: float, bins: int
) -> tuple[float, pd.DataFrame]:
    """The expected calibration error and the reliability bins (a DataFrame: bin, confidence,
    accuracy, count) of the test predictions at temperature 1, from theirs at `temperature`."""
    y_true = class_indices(predictions, "label", classes)
    probabilities = predictions[[f"p_{name}" for name in classes]].to_numpy(dtype=float)
    uncalibrated = without_temperature(probabilities, temperature)
    ece = expected_calibration_error(y_true, uncalibrated, bins)
    return ece, pd.DataFrame(reliability(y_true, uncalibrated, bins))
