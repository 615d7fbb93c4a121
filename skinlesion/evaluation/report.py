"""What evaluate writes about the test split: the metrics (balanced accuracy first, with a 95%
bootstrap interval over lesions), one row of predictions per image, and the curves' data.

Its params section `evaluate` is defined here, for the evaluate stage only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from skinlesion.config import Section, View
from skinlesion.data.split import lesion_groups
from skinlesion.evaluation.metrics import bootstrap_interval, classification_report, one_vs_rest_curves, reliability
from skinlesion.model.device import TrainingDevice
from skinlesion.model.inference import TTA


class EvaluateParams(Section):
    batch_size: int = Field(gt=0)
    bootstrap_resamples: int = Field(gt=0, description="lesions resampled for the 95% interval of balanced accuracy")
    calibration_bins: int = Field(gt=0, description="equal-width confidence bins of the ECE and reliability diagram")
    seed: int
    tta: TTA = Field(
        description="test-time augmentation: none, flips (2 views) or dihedral (8); probabilities averaged"
    )


class EvaluateRun(View):
    """The params evaluate reads."""

    training: TrainingDevice
    evaluate: EvaluateParams


def evaluation_report(
    manifest: pd.DataFrame,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    classes: tuple[str, ...],
    params: EvaluateParams,
) -> dict:
    """The test metrics: balanced accuracy and its interval first, then the classification report."""
    report = classification_report(y_true, probabilities, classes, params.calibration_bins)
    low, high = bootstrap_interval(
        y_true,
        probabilities.argmax(axis=1),
        lesion_groups(manifest).to_numpy(),
        len(classes),
        resamples=params.bootstrap_resamples,
        seed=params.seed,
    )
    headline = {"balanced_accuracy": report.pop("balanced_accuracy")}
    return {**headline, "balanced_accuracy_ci95_low": low, "balanced_accuracy_ci95_high": high, **report}


def predictions_table(manifest: pd.DataFrame, probabilities: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """image, label, predicted, then one probability column per class."""
    table = manifest[["image", "label"]].reset_index(drop=True)
    table["predicted"] = np.asarray(classes)[probabilities.argmax(axis=1)]
    for k, name in enumerate(classes):
        table[f"p_{name}"] = probabilities[:, k].round(6)
    return table


def write_curves(
    y_true: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...], bins: int, folder: Path
) -> None:
    """One CSV per class and curve (roc_MEL.csv: fpr, tpr; pr_MEL.csv: recall, precision) and
    reliability.csv (confidence, accuracy, count per bin), for DVC's linear plots."""
    for name, curve in one_vs_rest_curves(y_true, probabilities, classes).items():
        roc = pd.DataFrame({"fpr": curve["fpr"], "tpr": curve["tpr"]})
        roc.round(6).to_csv(folder / f"roc_{name}.csv", index=False)
        pr = pd.DataFrame({"recall": curve["recall"], "precision": curve["precision"]})
        pr.round(6).to_csv(folder / f"pr_{name}.csv", index=False)
    calibration = pd.DataFrame(
        reliability(y_true, probabilities, bins), columns=["bin", "confidence", "accuracy", "count"]
    )
    calibration.round(6).to_csv(folder / "reliability.csv", index=False)
