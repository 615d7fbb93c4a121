"""Stage gradcam: Grad-CAM overlays for a class-balanced, seeded choice of test images.

Each PNG shows the image and the heatmap for the predicted class, titled with the true
class, the predicted class and its probability. DVC shows the folder as image plots.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from stages.cam import GradCAM, overlay
from stages.dataset import ImageArrayDataset
from stages.files import atomic_dir
from stages.model import cam_layer, load_checkpoint
from stages.params import load_params
from stages.store import read_manifest
from stages.transforms import eval_transform

log = logging.getLogger(__name__)


def choose_samples(manifest: pd.DataFrame, count: int, seed: int) -> pd.DataFrame:
    """Up to `count` rows, taking classes in turn so that rare classes are shown too."""
    rng = np.random.default_rng(seed)
    queues = {label: list(rng.permutation(group.index)) for label, group in manifest.groupby("label", sort=True)}
    chosen: list = []
    while len(chosen) < count and any(queues.values()):
        for queue in queues.values():
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return manifest.loc[chosen]


def render(image: np.ndarray, cam: np.ndarray, title: str, path: Path) -> None:
    fig = Figure(figsize=(4.2, 2.4))
    left, right = fig.subplots(1, 2)
    left.imshow(image)
    right.imshow(overlay(image, cam))
    for ax in (left, right):
        ax.set_axis_off()
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--prepared", type=Path, required=True, help="prepare-split output folder (test is read)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the overlay PNGs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params().gradcam

    model, info = load_checkpoint(args.model)
    manifest = read_manifest(args.prepared / "test.csv")
    samples = choose_samples(manifest, params.num_samples, params.seed)
    dataset = ImageArrayDataset(args.prepared / "test.npy", samples, eval_transform(mean=tuple(info["mean"]), std=tuple(info["std"])))
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    with GradCAM(model, cam_layer(model)) as gradcam:
        cams, probabilities = gradcam(images)  # maps for the predicted class
    predicted = probabilities.argmax(dim=1)
    with atomic_dir(args.out) as tmp:
        for i, (_, row) in enumerate(samples.iterrows()):
            label = info["classes"][predicted[i]]
            title = f"{row['image']}\ntrue {row['label']} | predicted {label} (p={probabilities[i, predicted[i]]:.2f})"
            render(dataset.image(i), cams[i].numpy(), title, tmp / f"{i:02d}_{row['label']}_{row['image']}.png")
    log.info("wrote %d Grad-CAM overlays to %s", len(samples), args.out)


if __name__ == "__main__":
    main()
