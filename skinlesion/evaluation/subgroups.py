"""How the model does by age band, sex and anatomical site, from the metadata each image
carries (age_approx, sex, anatom_site_general; empty where unknown): a model can be good on
average and poor for one group of patients.

Each group gets the test report's headline, balanced accuracy with its 95% lesion-bootstrap
interval, and recall per class; a group whose interval lies wholly below the overall balanced
accuracy is marked (`below_overall`). A group with fewer images than `min_images` is reported
as too small, its images counted but not scored: on a handful of images an interval says
nothing.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from skinlesion.evaluation.metrics import balanced_accuracy, bootstrap_interval, recalls
from skinlesion.evaluation.report_schema import SubgroupFigures, Subgroups

UNKNOWN = "unknown"
AGE_BANDS = ("under_30", "30_to_60", "over_60", UNKNOWN)


def age_band(age: str) -> str:
    """under_30, 30_to_60 (both ends in), over_60, or unknown for an empty or unreadable age."""
    try:
        years = float(age)
    except ValueError:
        return UNKNOWN
    if np.isnan(years):
        return UNKNOWN
    return "under_30" if years < 30 else "30_to_60" if years <= 60 else "over_60"


def _name(value: str) -> str:
    """A metadata value as an eval.json key: lower case, runs of other characters as `_`."""
    value = str(value).strip().lower()
    return re.sub(r"[^a-z0-9]+", "_", value).strip("_") or UNKNOWN


def groups(manifest: pd.DataFrame) -> dict[str, pd.Series]:
    """Each image's group by attribute: age (AGE_BANDS), sex and site (ISIC's values), unknown
    where the metadata is empty or the column absent."""

    def column(name: str) -> pd.Series:
        if name not in manifest.columns:
            return pd.Series([""] * len(manifest), index=manifest.index)
        return manifest[name].fillna("").astype(str)

    return {
        "age": column("age_approx").map(age_band),
        "sex": column("sex").map(_name),
        "site": column("anatom_site_general").map(_name),
    }


def subgroup_report(
    manifest: pd.DataFrame,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    lesions: np.ndarray,
    classes: tuple[str, ...],
    *,
    overall: float,
    min_images: int,
    resamples: int,
    seed: int,
) -> Subgroups:
    """eval.json's `subgroups`: the minimum, then per attribute and group (age bands in order,
    other groups by name, unknown last) the images and, for a group of at least `min_images`,
    balanced accuracy, its interval (`resamples` lesion resamples, `seed`), whether the
    interval lies wholly below `overall`, and recall of each class the group has."""
    by_attribute = {}
    for attribute, labels in groups(manifest).items():
        labels = labels.to_numpy()
        order = AGE_BANDS if attribute == "age" else sorted(set(labels) - {UNKNOWN}) + [UNKNOWN]
        by_attribute[attribute] = {}
        for group in order:
            rows = np.flatnonzero(labels == group)
            if len(rows) < min_images:
                by_attribute[attribute][group] = SubgroupFigures(images=len(rows), too_small=True)
                continue
            truth, predicted = y_true[rows], y_pred[rows]
            low, high = bootstrap_interval(
                truth, predicted, lesions[rows], len(classes), resamples=resamples, seed=seed
            )
            recall = recalls(truth, predicted, len(classes))
            by_attribute[attribute][group] = SubgroupFigures(
                images=len(rows),
                too_small=False,
                balanced_accuracy=balanced_accuracy(truth, predicted, len(classes)),
                balanced_accuracy_ci95_low=low,
                balanced_accuracy_ci95_high=high,
                below_overall=bool(high < overall),
                # a class the group has no image of has no recall (NaN): left out
                recall={name: float(recall[k]) for k, name in enumerate(classes) if not np.isnan(recall[k])},
            )
    return Subgroups(min_images=min_images, **by_attribute)
