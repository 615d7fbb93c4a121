"""K-Means undersampling at full scale: 9,000 NV training images at 224 px cut to 3,500.

Times the kmeans-undersample core (pooled features read from the memory-mapped array,
PCA, K-Means, proportional draw) on 9,000 images, and, on the same first 1,000 images in
the same run, against the naive way (K-Means straight on the flattened 224x224x3 pixels).

    python -m benchmarks.kmeans --out benchmarks/results/cpu/kmeans.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

from benchmarks import publish
from benchmarks.timing import timed
from skinlesion.classes import CLASSES
from skinlesion.data.arrays import ImageWriter, open_images
from skinlesion.data.synthetic import lesion_images
from skinlesion.resampling.kmeans import undersample
from skinlesion.resampling.params import SamplingParams


def make_images(path: Path, count: int, size: int, seed: int = 0) -> None:
    """`count` dermoscopy-like images of 8 classes (as visibly different sub-types)."""
    with ImageWriter(path, count, size) as writer:
        for row, (_, image) in enumerate(lesion_images(count, size, seed)):
            writer.write(row, np.asarray(image))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=9000)
    parser.add_argument("--target", type=int, default=3500)
    parser.add_argument("--baseline-images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    params = SamplingParams(
        majority_classes=("NV",),
        majority_target=args.target,
        minority_target=1,
        undersample="kmeans",
        oversample=True,
        kmeans_clusters=8,
        seed=0,
    )

    def project_seconds(images: np.ndarray, count: int, target: int) -> float:
        manifest = pd.DataFrame(
            {
                "image": [f"ISIC_{i:07d}" for i in range(count)],
                "label": "NV",
                "lesion_id": "",
                "split": "train",
                "row": np.arange(count),
            }
        )
        (kept, _), seconds = timed(
            lambda: undersample(
                manifest, images, SamplingParams(**{**params.__dict__, "majority_target": target}), CLASSES
            )
        )
        assert len(kept) == target
        return seconds

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nv.npy"
        make_images(path, args.images, args.size)
        images = open_images(path)
        full = project_seconds(images, args.images, args.target)
        small_target = args.baseline_images * args.target // args.images
        project_small = project_seconds(images, args.baseline_images, small_target)

        def naive() -> None:
            count = args.baseline_images
            pixels = np.asarray(images[:count], dtype=np.float32).reshape(count, -1) / 255
            KMeans(n_clusters=8, n_init=4, random_state=0).fit_predict(pixels)

        _, naive_small = timed(naive)

    report = {
        "image_size": args.size,
        f"project_s_{args.images}_to_{args.target}": round(full, 2),
        f"project_s_{args.baseline_images}": round(project_small, 2),
        f"naive_pixels_kmeans_s_{args.baseline_images}": round(naive_small, 2),
        "speedup_at_baseline_size": round(naive_small / project_small, 1),
    }
    publish(report, args.out)


if __name__ == "__main__":
    main()
