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

import pandas as pd
import torch

from skinlesion.atomic import atomic_dir
from skinlesion.classes import read_classes
from skinlesion.config import load_params
from skinlesion.data.arrays import read_manifest
from skinlesion.entry import run_stage
from skinlesion.evaluation.gradcam import GradcamRun, choose_samples, explain_samples
from skinlesion.model.checkpoint import load_for_inference, model_dataset
from skinlesion.model.device import select_device

log = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--prepared", type=Path, required=True, help="prepare-split output folder (test is read)")
    parser.add_argument("--predictions", type=Path, required=True, help="evaluate's per-image predictions")
    parser.add_argument("--out", type=Path, required=True, help="folder for the overlay PNGs")
    args = parser.parse_args()
    params = load_params(GradcamRun)

    model, info = load_for_inference(args.model, select_device(params.training.device), read_classes(args.prepared))
    samples = choose_samples(pd.read_csv(args.predictions), params.gradcam)
    manifest = read_manifest(args.prepared / "test.csv").set_index("image").loc[samples["image"]].reset_index()
    dataset = model_dataset(args.prepared, manifest, info, str(args.prepared / "test.csv"))
    with atomic_dir(args.out) as tmp:
        if len(dataset):
            images = torch.stack([dataset[i][0] for i in range(len(dataset))])
            pixels = [dataset.image(i) for i in range(len(dataset))]
            metadata = dataset.metadata  # None unless the model fuses metadata
            explain_samples(model, images, pixels, samples, list(info.classes), tmp, metadata)
    log.info("wrote %d Grad-CAM overlays to %s", len(samples), args.out)


if __name__ == "__main__":
    run_stage(main)
