"""Stage gradcam: Grad-CAM overlays of correctly and wrongly classified test images.

For every class, up to `gradcam.correct_per_class` test images the model got right and
`gradcam.wrong_per_class` it got wrong (seeded choice, from evaluate's predictions). Each
PNG shows the image, the map for the predicted class and, when the prediction is wrong, the
map for the true class, titled with both classes and the predicted probability. DVC shows
the folder as image plots.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from stages.cam import GradCAM, save_overlays
from stages.dataset import ImageArrayDataset
from stages.files import atomic_dir
from stages.model import cam_layer, load_checkpoint
from stages.params import CLASSES, GradcamParams, load_params
from stages.store import read_manifest
from stages.transforms import eval_transform

log = logging.getLogger(__name__)


def choose_samples(predictions: pd.DataFrame, params: GradcamParams) -> pd.DataFrame:
    """Per true class, a seeded choice of right and wrong predictions; adds column `correct`."""
    rng = np.random.default_rng(params.seed)
    predictions = predictions.assign(correct=predictions["label"] == predictions["predicted"])
    chosen = []
    for _, of_class in predictions.groupby("label", sort=True):
        for correct, count in ((True, params.correct_per_class), (False, params.wrong_per_class)):
            pool = of_class[of_class["correct"] == correct]
            chosen.append(pool.iloc[rng.permutation(len(pool))[:count]])
    return pd.concat(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--prepared", type=Path, required=True, help="prepare-split output folder (test is read)")
    parser.add_argument("--predictions", type=Path, required=True, help="evaluate's per-image predictions")
    parser.add_argument("--out", type=Path, required=True, help="folder for the overlay PNGs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params().gradcam

    model, info = load_checkpoint(args.model, CLASSES)
    classes = list(info["classes"])
    samples = choose_samples(pd.read_csv(args.predictions), params)
    manifest = read_manifest(args.prepared / "test.csv").set_index("image").loc[samples["image"]].reset_index()
    dataset = ImageArrayDataset(args.prepared / "test.npy", manifest, eval_transform(mean=tuple(info["mean"]), std=tuple(info["std"])))
    images = torch.stack([dataset[i][0] for i in range(len(dataset))]) if len(dataset) else torch.empty(0)
    with atomic_dir(args.out) as tmp:
        if len(dataset):
            true = torch.tensor([classes.index(label) for label in samples["label"]])
            with GradCAM(model, cam_layer(model)) as gradcam:
                predicted_cams, probabilities = gradcam(images)  # maps for the predicted class
                true_cams, _ = gradcam(images, true)
            for i, row in enumerate(samples.itertuples(index=False)):
                predicted = int(probabilities[i].argmax())
                cams = {f"Grad-CAM: {classes[predicted]} (predicted)": predicted_cams[i].numpy()}
                if not row.correct:
                    cams[f"Grad-CAM: {row.label} (true)"] = true_cams[i].numpy()
                title = f"{row.image}: true {row.label} | predicted {classes[predicted]} (p={probabilities[i, predicted]:.2f})"
                verdict = "correct" if row.correct else "wrong"
                save_overlays(dataset.image(i), cams, title, tmp / f"{row.label}_{verdict}_{row.image}.png")
    log.info("wrote %d Grad-CAM overlays to %s", len(samples), args.out)


if __name__ == "__main__":
    main()
