"""Stage augment-oversample: fill every training class below its target with augmented copies.

Copies are made only from the class's own real training images (never val or test), with
the published transforms, deterministically for a given seed. Writes the balanced training
set (kept real images, then copies) as one array with a manifest naming each copy's source.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from tqdm import tqdm

from stages.files import atomic_dir, atomic_file, write_json
from stages.params import AugmentationParams, load_params
from stages.sampling import oversample_plan
from stages.store import ImageWriter, class_counts, open_images, read_manifest, write_manifest
from stages.transforms import augment

log = logging.getLogger(__name__)


def balanced_manifest(kept: pd.DataFrame, plan: pd.DataFrame) -> pd.DataFrame:
    """Manifest of the balanced set: real rows first, then one row per planned copy."""
    real = kept.assign(source_image=kept["image"], augmented=False)
    copies = plan.assign(
        source_image=plan["image"],
        image=plan["image"] + "_aug" + plan["copy"].astype(str).str.zfill(3),
        augmented=True,
    ).drop(columns="copy")
    balanced = pd.concat([real, copies], ignore_index=True)
    balanced["source_row"] = balanced["row"]  # row of the source image in the prepared train array
    balanced["row"] = np.arange(len(balanced))
    return balanced


def write_balanced(images: np.ndarray, balanced: pd.DataFrame, params: AugmentationParams, path: Path) -> None:
    """Write the balanced array: real images copied, augmented ones drawn with `params.seed`."""
    transform = augment(params=params, size=images.shape[1])
    torch.manual_seed(params.seed)  # copies are drawn in manifest order from one seeded stream
    sources = balanced["source_row"].to_numpy()
    with ImageWriter(path, len(balanced), images.shape[1]) as target:
        for row, (source, augmented) in enumerate(tqdm(zip(sources, balanced["augmented"]), total=len(balanced), desc="augment-oversample", unit="img")):
            pixels = torch.from_numpy(np.array(images[source])).permute(2, 0, 1)
            if augmented:
                pixels = transform(pixels)
            target.write(row, pixels.permute(1, 2, 0).numpy())


def plot_grid(balanced: pd.DataFrame, images: np.ndarray, path: Path, per_class: int = 4) -> None:
    """For each oversampled class, one original beside `per_class` of its copies."""
    copies = balanced[balanced["augmented"]]
    labels = list(dict.fromkeys(copies["label"]))
    fig = Figure(figsize=(1.6 * (per_class + 1), 1.6 * max(1, len(labels))))
    axes = fig.subplots(max(1, len(labels)), per_class + 1, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for row_axes, label in zip(axes, labels):
        source = copies.loc[copies["label"] == label, "source_image"].value_counts().index[0]
        original = balanced[(balanced["image"] == source) & ~balanced["augmented"]].iloc[0]
        made = copies[copies["source_image"] == source].head(per_class)
        row_axes[0].imshow(images[original["row"]])
        row_axes[0].set_title(f"{label} original", fontsize=7)
        for ax, (_, copy) in zip(row_axes[1:], made.iterrows()):
            ax.imshow(images[copy["row"]])
            ax.set_title("copy", fontsize=7)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", type=Path, required=True, help="prepare-split output folder")
    parser.add_argument("--kept", type=Path, required=True, help="kmeans-undersample manifest")
    parser.add_argument("--out", type=Path, required=True, help="folder for the balanced array and manifest")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON file for the counts")
    parser.add_argument("--plot", type=Path, required=True, help="PNG grid of originals and copies")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params()

    kept = read_manifest(args.kept)
    plan = oversample_plan(kept, params.sampling.targets(), params.augmentation.seed)
    balanced = balanced_manifest(kept, plan)
    with atomic_dir(args.out) as tmp:
        write_balanced(open_images(args.prepared / "train.npy"), balanced, params.augmentation, tmp / "train.npy")
        write_manifest(balanced, tmp / "train.csv")
        plot_grid(balanced, open_images(tmp / "train.npy"), args.plot)
    write_json(args.metrics, {"before": class_counts(kept["label"]), "after": class_counts(balanced["label"]), "augmented": int(balanced["augmented"].sum())})
    log.info("balanced training set: %s", class_counts(balanced["label"]))


if __name__ == "__main__":
    main()
