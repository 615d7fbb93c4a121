"""Train/val/test assignment, stratified by class and grouped by lesion.

Hand-written rather than scikit-learn's StratifiedGroupKFold: that one deals K equal folds,
while the splits here have unequal target shares (70/15/15), and it gives no guarantee that a
rare class (DF: 239 images in all of ISIC 2019) reaches every split; the dealing below does.
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
    and tested on. Within each class, groups are dealt largest first (ties in a seeded
    random order) to the split furthest below its target share, measured relative to
    that target: each split gets a group of every class with at least three groups, and
    on large data every split's class shares come out within a fraction of a percent of
    the whole set's. Returns a Series of split names aligned with `labels.index`.
    """
    fractions = np.array([1.0 - val_fraction - test_fraction, val_fraction, test_fraction])
    rng = np.random.default_rng(seed)
    assignment = pd.Series("", index=labels.index, dtype=object)
    # a lesion has one class (checked on reading), so grouping by (label, group) is by lesion
    for label in sorted(labels["label"].unique()):
        of_class = labels[labels["label"] == label]
        sizes = of_class.groupby("group").size()
        order = rng.permutation(len(sizes))
        # a stable sort keeps the random order among groups of equal size
        ranked = sizes.iloc[order].sort_values(ascending=False, kind="stable")
        targets = fractions * len(of_class)
        filled = np.zeros(len(SPLITS))
        group_split = {}
        for group, size in ranked.items():
            deficit = (targets - filled) / targets
            chosen = int(np.argmax(deficit))
            group_split[group] = SPLITS[chosen]
            filled[chosen] += size
        assignment[of_class.index] = of_class["group"].map(group_split)
    return assignment
