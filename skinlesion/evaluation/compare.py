"""Did a change help? Two models, or two groups of runs (seeds of one setting), compared on the
same test images, pairing every image: `skinlesion compare`.

A difference in balanced accuracy is a finding only when it is larger than what the choice
of test images and of seeds moves by itself. So every figure of B - A comes with a paired
bootstrap interval: each resample draws whole lesions with replacement, the same lesions for
both sides (metrics.lesion_resamples), and, for a side of several runs, also draws its runs
with replacement, so that the interval holds the seeds' spread as well. For one run a side,
McNemar's exact test adds a check of plain accuracy: of the images exactly one of the two gets
right, is the split between them too uneven for chance? It takes images as independent, so on
a test set with several images per lesion its p-value is somewhat too small; the interval is
the finding.
Only predictions are read (evaluate's eval/predictions.csv: image, lesion, label, p_<class>),
so any two runs compare without their models.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from skinlesion.errors import DataError
from skinlesion.evaluation.metrics import (
    balanced_accuracy,
    lesion_resamples,
    macro_auc,
    percentile_interval,
    recalls,
)

LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class Run:
    """One run's predictions on one image set: `name` says where they came from."""

    name: str
    table: pd.DataFrame  # image, label, p_<class> ..., optionally lesion

    @property
    def classes(self) -> list[str]:
        return [column.removeprefix("p_") for column in self.table.columns if column.startswith("p_")]


@dataclasses.dataclass(frozen=True)
class Paired:
    """Runs of two sides on the same images, in one order: labels (N,), lesion groups (N,),
    and each side's probabilities, (runs, N, C)."""

    lesion_ids: bool  # False: no run named lesions, and images are resampled one by one
    classes: list[str]
    y_true: np.ndarray
    groups: np.ndarray
    a: np.ndarray
    b: np.ndarray


def pair(a: list[Run], b: list[Run]) -> Paired:
    """The runs of both sides on one image order. A DataError, naming the images and the runs,
    when they were not scored on the same images with the same labels and classes."""
    runs = a + b
    first = runs[0]
    for run in runs:
        for column in ("image", "label"):
            if column not in run.table.columns:
                raise DataError(f"{run.name}: the predictions have no column {column!r}")
        if sorted(run.classes) != sorted(first.classes) or not run.classes:
            raise DataError(f"{run.name} predicts {run.classes}, {first.name} {first.classes}: not comparable")
        if run.table["image"].duplicated().any():
            raise DataError(
                f"{run.name}: an image twice ({run.table['image'][run.table['image'].duplicated()].iloc[0]})"
            )
        _same_images(first, run)
    order = first.table.sort_values("image")
    images = order["image"].to_numpy()
    labels = order.set_index("image")["label"]
    for run in runs[1:]:
        theirs = run.table.set_index("image")["label"].reindex(images)
        differs = images[(theirs != labels.to_numpy()).to_numpy()]
        if len(differs):
            raise DataError(
                f"{first.name} and {run.name} label images differently ({_some(differs)}): not the same test set"
            )
    classes = first.classes
    index = {name: k for k, name in enumerate(classes)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise DataError(f"{first.name}: labels {unknown} are none of the predicted classes {classes}")
    groups = _groups(runs, images)
    return Paired(
        lesion_ids=groups is not None,
        classes=classes,
        y_true=labels.map(index).to_numpy(),
        groups=images.astype(str) if groups is None else groups,
        a=np.stack([_probabilities(run, images, classes) for run in a]),
        b=np.stack([_probabilities(run, images, classes) for run in b]),
    )


def _same_images(first: Run, run: Run) -> None:
    mine, theirs = set(first.table["image"]), set(run.table["image"])
    if mine == theirs:
        return
    parts = []
    if mine - theirs:
        parts.append(f"{len(mine - theirs)} only in {first.name} ({_some(sorted(mine - theirs))})")
    if theirs - mine:
        parts.append(f"{len(theirs - mine)} only in {run.name} ({_some(sorted(theirs - mine))})")
    raise DataError(f"scored on different images: {'; '.join(parts)}. Compare runs on the same test set")


def _some(names, shown: int = 5) -> str:
    names = list(names)
    return ", ".join(map(str, names[:shown])) + (", ..." if len(names) > shown else "")


def _groups(runs: list[Run], images: np.ndarray) -> np.ndarray | None:
    """Each image's lesion, from the first run that names lesions (evaluate writes them); None
    for predictions written before it did."""
    for run in runs:
        if "lesion" in run.table.columns:
            return run.table.set_index("image")["lesion"].reindex(images).astype(str).to_numpy()
    return None


def _probabilities(run: Run, images: np.ndarray, classes: list[str]) -> np.ndarray:
    table = run.table.set_index("image").reindex(images)
    return table[[f"p_{name}" for name in classes]].to_numpy(dtype=np.float64)


def _balanced(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    return balanced_accuracy(y_true, probabilities.argmax(axis=1), probabilities.shape[1])


def _side(runs: np.ndarray, y_true: np.ndarray, measure) -> tuple[dict, float | None]:
    """A side's figure per run, its mean and sd (rounded for the report), and the exact mean."""
    values = [measure(y_true, probabilities) for probabilities in runs]
    defined = [value for value in values if value is not None]
    mean = float(np.mean(defined)) if defined else None
    shown = {
        "runs": [None if value is None else round(value, 4) for value in values],
        "mean": None if mean is None else round(mean, 4),
        "sd": round(float(np.std(defined, ddof=1)), 4) if len(defined) > 1 else None,
    }
    return shown, mean


def mcnemar(y_true: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict:
    """McNemar's exact test on the images that exactly one of two models gets right (a, b:
    (N, C) probabilities): the counts and the two-sided binomial p-value."""
    right_a, right_b = a.argmax(axis=1) == y_true, b.argmax(axis=1) == y_true
    only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    p = 1.0 if only_a + only_b == 0 else float(binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue)
    return {"only_a_right": only_a, "only_b_right": only_b, "p_value": p}


def compare(a: list[Run], b: list[Run], *, resamples: int = 2000, seed: int = 0) -> dict:
    """B against A on their common test images: each side's balanced accuracy and macro AUC
    (per run, mean, sd over runs), their difference B - A with its paired bootstrap interval,
    per-class recall differences, and for one run a side McNemar's exact test."""
    paired = pair(a, b)
    y_true = paired.y_true
    measures = {"balanced_accuracy": _balanced, "macro_auc": macro_auc}
    report = {
        "images": len(y_true),
        "lesions": len(np.unique(paired.groups)) if paired.lesion_ids else None,
        "a": [run.name for run in a],
        "b": [run.name for run in b],
        "resamples": resamples,
        "seed": seed,
    }
    draws = _differences(paired, measures, resamples, seed)
    for name, measure in measures.items():
        (side_a, mean_a), (side_b, mean_b) = _side(paired.a, y_true, measure), _side(paired.b, y_true, measure)
        entry = {"a": side_a, "b": side_b, "difference": None, "ci95": None, "excludes_zero": None}
        defined = draws[name][~np.isnan(draws[name])]
        if mean_a is not None and mean_b is not None and len(defined):
            low, high = percentile_interval(defined, LEVEL)
            entry |= {
                "difference": round(mean_b - mean_a, 4),
                "ci95": [round(low, 4), round(high, 4)],
                "excludes_zero": bool(low > 0 or high < 0),
            }
        report[name] = entry
    classes = len(paired.classes)
    recall_a = np.nanmean([recalls(y_true, p.argmax(axis=1), classes) for p in paired.a], axis=0)
    recall_b = np.nanmean([recalls(y_true, p.argmax(axis=1), classes) for p in paired.b], axis=0)
    support = np.bincount(y_true, minlength=classes)
    report["per_class_recall"] = {
        name: {
            "images": int(support[k]),
            "a": round(float(recall_a[k]), 4),
            "b": round(float(recall_b[k]), 4),
            "difference": round(float(recall_b[k] - recall_a[k]), 4),
        }
        for k, name in enumerate(paired.classes)
        if support[k]
    }
    if len(a) == 1 and len(b) == 1:
        report["mcnemar"] = mcnemar(y_true, paired.a[0], paired.b[0])
    return report


def _differences(paired: Paired, measures: dict, resamples: int, seed: int) -> dict[str, np.ndarray]:
    """Bootstrap draws of B - A for each measure: the same lesions for both sides and, for a
    side of several runs, its runs drawn with replacement too (NaN where undefined)."""
    runs = np.random.default_rng([seed, 1])
    draws = {name: np.empty(resamples) for name in measures}
    for r, rows in enumerate(lesion_resamples(paired.groups, resamples, seed)):
        picked_a = runs.integers(0, len(paired.a), len(paired.a)) if len(paired.a) > 1 else [0]
        picked_b = runs.integers(0, len(paired.b), len(paired.b)) if len(paired.b) > 1 else [0]
        y_true = paired.y_true[rows]
        for name, measure in measures.items():
            values_a = [measure(y_true, paired.a[k][rows]) for k in picked_a]
            values_b = [measure(y_true, paired.b[k][rows]) for k in picked_b]
            if None in values_a or None in values_b:
                draws[name][r] = np.nan
            else:
                draws[name][r] = np.mean(values_b) - np.mean(values_a)
    return draws
