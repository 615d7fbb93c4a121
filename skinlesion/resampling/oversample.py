"""Augmentation oversampling: fill every training class below its target with augmented
copies of its own real training images (never val or test), deterministically for the seed.

The balanced training set is a manifest: the kept real images, then the copies, each naming
its source. Pixels are not copied: the train stage draws every copy afresh from its source
each epoch, with the published augmentation, as the original code does. (Copies drawn once
and stored were augmented twice, once here and again online, never varied between epochs,
and carried the black rotation corners twice: docs/real_data.md measures the change on real
images.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from skinlesion.atomic import atomic_file
from skinlesion.config import View
from skinlesion.data.arrays import ManifestImages
from skinlesion.resampling.targets import OversampleTargets
from skinlesion.seeding import seed_everything
from skinlesion.transforms.augment import augment
from skinlesion.transforms.params import AugmentationParams


class OversampleRun(View):
    """The params augment-oversample reads."""

    sampling: OversampleTargets
    augmentation: AugmentationParams


def oversample_plan(manifest: pd.DataFrame, targets: dict[str, int], seed: int) -> pd.DataFrame:
    """Which real images to copy, and how often, to fill each class up to its target.

    Returns one row per copy to make (columns of `manifest`, for its source image, plus
    `copy`: the copy's number for that source). Sources are used in turn, in a seeded
    shuffled order, so every image of a class is copied equally often (to within one).
    """
    rng = np.random.default_rng(seed)
    plans = []
    for label, target in targets.items():
        real = manifest[manifest["label"] == label]
        missing = target - len(real)
        if missing <= 0:
            continue
        if len(real) == 0:
            raise ValueError(f"class {label} has no training images to oversample from")
        order = rng.permutation(len(real))
        turns = np.resize(order, missing)  # order repeated until `missing` long
        plan = real.iloc[turns].copy()
        plan["copy"] = np.arange(missing) // len(real)
        plans.append(plan)
    if not plans:
        return manifest.iloc[:0].assign(copy=pd.Series(dtype=np.int64))
    return pd.concat(plans, ignore_index=True)


def balanced_manifest(kept: pd.DataFrame, plan: pd.DataFrame) -> pd.DataFrame:
    """Manifest of the balanced set: real rows first, then one row per planned copy.

    Every row's `split` and `row` are its source image's in prepare-split's arrays: a copy is
    not stored, the train stage draws it afresh from its source each epoch.
    """
    real = kept.assign(source_image=kept["image"], augmented=False)
    copies = plan.assign(
        source_image=plan["image"],
        image=plan["image"] + "_aug" + plan["copy"].astype(str).str.zfill(3),
        augmented=True,
    ).drop(columns="copy")
    return pd.concat([real, copies], ignore_index=True)


def plot_grid(balanced: pd.DataFrame, prepared: Path, params: AugmentationParams, path: Path, per_class: int = 4):
    """For each oversampled class, one original beside `per_class` draws of a copy of it, as
    the train stage draws them (seeded with `params.seed`, so the grid is reproducible);
    `prepared` is prepare-split's folder, whose arrays `balanced` addresses."""
    images = ManifestImages(prepared, balanced)
    copies = balanced[balanced["augmented"]]
    labels = list(dict.fromkeys(copies["label"]))
    transform = augment(params=params, size=images.shape[1])
    seed_everything(params.seed)  # the draws of the transform
    fig = Figure(figsize=(1.6 * (per_class + 1), 1.6 * max(1, len(labels))))
    axes = fig.subplots(max(1, len(labels)), per_class + 1, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for row_axes, label in zip(axes, labels):
        source = copies.loc[copies["label"] == label, "source_image"].value_counts().index[0]
        original = images[int(np.flatnonzero(balanced["source_image"].to_numpy() == source)[0])]
        pixels = torch.from_numpy(np.array(original)).permute(2, 0, 1)
        row_axes[0].imshow(original)
        row_axes[0].set_title(f"{label} original", fontsize=7)
        for ax in row_axes[1:]:
            ax.imshow(transform(pixels).permute(1, 2, 0).numpy())
            ax.set_title("copy", fontsize=7)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
