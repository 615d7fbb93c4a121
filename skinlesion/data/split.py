"""Train/val/test assignment and cross-validation folds, stratified by class and grouped by lesion.

Hand-written rather than scikit-learn's StratifiedGroupKFold: that one deals K equal folds,
while the splits here have unequal target shares (70/15/15), and it gives no guarantee that a
rare class (DF: 239 images in all of ISIC 2019) reaches every split or fold; the dealing
below (deal_groups) does, and serves both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLITS: tuple[str, ...] = ("train", "val", "test")


def lesion_groups(frame: pd.DataFrame) -> pd.Series:
    """The unit that must never straddle two splits, per row of `frame` (columns `image`,
    `lesion_id`): the lesion, or the image itself when it has no lesion id."""
    return frame["lesion_id"].where(frame["lesion_id"] != "", frame["image"])


def split_by_lesion(labels: pd.DataFrame, *, val_fraction: float, test_fraction: float, seed: int) -> pd.Series:
    """Assign every row of `labels` (columns `label`, `group`) to train, val or test.

    All images of one group (lesion) land in one split, so no lesion is seen in training
    and tested on (deal_groups, with shares 1 - val - test, val and test). Returns a Series
    of split names aligned with `labels.index`.
    """
    shares = np.array([1.0 - val_fraction - test_fraction, val_fraction, test_fraction])
    return deal_groups(labels, shares, seed).map(SPLITS.__getitem__)


def deal_groups(labels: pd.DataFrame, shares: np.ndarray, seed: int) -> pd.Series:
    """Deal the groups of `labels` (columns `label`, `group`) into len(shares) parts; returns
    each row's part (0, 1, ...) aligned with `labels.index`.

    Within each class, groups are dealt largest first (ties in a seeded random order) to the
    part furthest below its target share, measured relative to that target: each part gets a
    group of every class with at least as many groups as there are parts, and on large data
    every part's class shares come out within a fraction of a percent of the whole set's.
    """
    rng = np.random.default_rng(seed)
    assignment = pd.Series(-1, index=labels.index, dtype=int)
    # a lesion has one class (checked on reading), so grouping by (label, group) is by lesion
    for label in sorted(labels["label"].unique()):
        of_class = labels[labels["label"] == label]
        sizes = of_class.groupby("group").size()
        order = rng.permutation(len(sizes))
        # a stable sort keeps the random order among groups of equal size
        ranked = sizes.iloc[order].sort_values(ascending=False, kind="stable")
        targets = shares * len(of_class)
        filled = np.zeros(len(shares))
        group_part = {}
        for group, size in ranked.items():
            chosen = int(np.argmax((targets - filled) / targets))
            group_part[group] = chosen
            filled[chosen] += size
        assignment[of_class.index] = of_class["group"].map(group_part)
    return assignment
