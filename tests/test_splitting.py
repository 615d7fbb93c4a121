import numpy as np
import pandas as pd
import pytest

from skinlesion.data.isic import read_labels
from skinlesion.data.split import SPLITS, split_by_lesion


def _labels(spec: dict[str, list[int]]) -> pd.DataFrame:
    """Rows for {class: [images per lesion, ...]}."""
    rows = []
    for label, sizes in spec.items():
        for lesion, size in enumerate(sizes):
            rows += [
                {"image": f"{label}_{lesion}_{i}", "label": label, "group": f"{label}_L{lesion}"} for i in range(size)
            ]
    return pd.DataFrame(rows)


def test_no_lesion_in_two_splits_and_every_class_in_every_split():
    rng = np.random.default_rng(0)
    labels = _labels(
        {
            "NV": list(rng.integers(1, 6, 120)),
            "MEL": list(rng.integers(1, 4, 40)),
            "DF": [1, 1, 2],
            "VASC": [3, 1, 1, 1],
        }
    )
    split = split_by_lesion(labels, val_fraction=0.15, test_fraction=0.15, seed=1)
    assert set(split) == set(SPLITS)
    assert (labels.assign(split=split).groupby("group")["split"].nunique() == 1).all()
    for label in labels["label"].unique():
        assert set(split[labels["label"] == label]) == set(SPLITS), label


def test_fractions_are_met_per_class():
    labels = _labels({"NV": [1] * 1000, "MEL": [2] * 300})
    split = split_by_lesion(labels, val_fraction=0.2, test_fraction=0.1, seed=3)
    shares = pd.crosstab(labels["label"], split, normalize="index")
    assert np.allclose(shares[["train", "val", "test"]].to_numpy(), [[0.7, 0.2, 0.1]] * 2, atol=0.01)


def test_seed_makes_it_deterministic_and_matters():
    labels = _labels({"NV": [1, 2, 3] * 50})
    first = split_by_lesion(labels, val_fraction=0.15, test_fraction=0.15, seed=7)
    assert first.equals(split_by_lesion(labels, val_fraction=0.15, test_fraction=0.15, seed=7))
    assert not first.equals(split_by_lesion(labels, val_fraction=0.15, test_fraction=0.15, seed=8))


def test_input_is_not_modified():
    labels = _labels({"NV": [1, 2] * 10})
    before = labels.copy()
    split_by_lesion(labels, val_fraction=0.15, test_fraction=0.15, seed=0)
    pd.testing.assert_frame_equal(labels, before)


def test_real_isic_2019_split(shared_data):
    """On the official labels: lesions never straddle splits; class shares within 1 point."""
    labels = read_labels(shared_data / "isic2019-labels")
    split = split_by_lesion(labels, val_fraction=0.15, test_fraction=0.15, seed=42)
    with_lesion = labels["lesion_id"] != ""
    assert (labels[with_lesion].assign(split=split).groupby("lesion_id")["split"].nunique() == 1).all()
    overall = labels["label"].value_counts(normalize=True)
    for name in SPLITS:
        shares = labels.loc[split == name, "label"].value_counts(normalize=True)
        assert (shares - overall).abs().max() < 0.01, name
    assert (split == "test").mean() == pytest.approx(0.15, abs=0.005)
