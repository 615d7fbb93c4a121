"""Subgroups in eval.json: by age band, sex and site, too-small groups counted but not scored."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from skinlesion.classes import CLASSES
from skinlesion.evaluation.subgroups import AGE_BANDS, age_band, subgroup_report


def test_age_bands_take_both_ends_of_thirty_to_sixty():
    assert [age_band(age) for age in ("5", "29", "30", "45.0", "60", "65", "", "n/a")] == [
        "under_30",
        "under_30",
        "30_to_60",
        "30_to_60",
        "30_to_60",
        "over_60",
        "unknown",
        "unknown",
    ]


def _case(images: int = 200):
    rng = np.random.default_rng(0)
    manifest = pd.DataFrame(
        {
            "image": [f"ISIC_{k}" for k in range(images)],
            "age_approx": rng.choice(["20", "45", "70", ""], images, p=[0.3, 0.3, 0.3, 0.1]),
            "sex": rng.choice(["male", "female"], images),
            "anatom_site_general": rng.choice(
                ["head/neck", "anterior torso", "palms/soles", ""], images, p=[0.45, 0.45, 0.05, 0.05]
            ),
        }
    )
    y_true = np.arange(images) % len(CLASSES)
    y_pred = y_true.copy()
    female = (manifest["sex"] == "female").to_numpy()
    y_pred[female & (rng.random(images) < 0.7)] = 0  # the model fails most women's lesions
    return manifest, y_true, y_pred


def test_counts_add_up_small_groups_are_not_scored_and_a_group_below_the_whole_is_marked():
    manifest, y_true, y_pred = _case()
    overall = balanced_accuracy_score(y_true, y_pred)
    report = subgroup_report(
        manifest,
        y_true,
        y_pred,
        manifest["image"].to_numpy(),
        CLASSES,
        overall=overall,
        min_images=15,
        resamples=300,
        seed=0,
    )
    assert report.min_images == 15 and list(report.age) == list(AGE_BANDS)
    assert list(report.site) == ["anterior_torso", "head_neck", "palms_soles", "unknown"]
    for groups in report.by_attribute().values():
        assert sum(group.images for group in groups.values()) == len(manifest)
    small = report.site["palms_soles"]
    assert small.too_small and small.images < 15
    assert small.model_dump() == {"images": small.images, "too_small": True}  # counted, not scored
    women, men = report.sex["female"], report.sex["male"]
    assert women.below_overall and not men.below_overall
    assert women.balanced_accuracy_ci95_high < overall < men.balanced_accuracy
    rows = (manifest["sex"] == "female").to_numpy()
    assert women.balanced_accuracy == pytest.approx(balanced_accuracy_score(y_true[rows], y_pred[rows]))
    assert men.recall == dict.fromkeys(CLASSES, 1.0)


def test_a_class_a_group_has_no_image_of_has_no_recall():
    manifest = pd.DataFrame({"image": ["a", "b", "c", "d"], "sex": ["male"] * 4})
    y_true, y_pred = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    report = subgroup_report(
        manifest, y_true, y_pred, manifest["image"].to_numpy(), CLASSES, overall=0.9, min_images=2, resamples=50, seed=0
    )
    assert report.sex["male"].recall == {"MEL": 0.5, "NV": 1.0}  # not NaN for the six classes it lacks
