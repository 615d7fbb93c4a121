"""A torch Dataset over prepare-split's decoded image arrays and a manifest of their rows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from skinlesion.data.arrays import ManifestImages

Transform = Callable[[torch.Tensor], torch.Tensor]


class ImageArrayDataset(Dataset):
    """Items are (transform(image), class index), and the image's metadata vector (float32)
    after them when `metadata` (encode_metadata's, one row per manifest row) is given; images
    come from prepare-split's memory-mapped arrays in `folder`, as the manifest's `split` and
    `row` address them (ManifestImages).

    The arrays are opened lazily in each DataLoader worker: the dataset that is pickled to the
    workers carries only paths and row numbers, never the pixels, so no worker copies a split. With
    `copy_transform`, the manifest's `augmented` rows (oversampled copies) get that transform
    instead of `transform`.
    """

    def __init__(
        self,
        folder: str | Path,
        manifest: pd.DataFrame,
        classes: tuple[str, ...],
        transform: Transform,
        copy_transform: Transform | None = None,
        metadata: np.ndarray | None = None,
    ):
        self.images = ManifestImages(folder, manifest)
        self.targets = manifest["label"].map(classes.index).to_numpy()
        self.transform = transform
        self.copy_transform = copy_transform
        self.copies = manifest["augmented"].to_numpy(dtype=bool) if copy_transform else None
        if metadata is not None and len(metadata) != len(manifest):
            raise ValueError(f"{len(metadata)} metadata rows for {len(manifest)} images")
        self.metadata = None if metadata is None else torch.from_numpy(metadata)

    def __len__(self) -> int:
        return len(self.images)

    def image(self, index: int) -> np.ndarray:
        """The stored pixels of item `index`, before any transform: (H, W, 3) uint8."""
        return np.array(self.images[index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | tuple[torch.Tensor, int, torch.Tensor]:
        pixels = torch.from_numpy(self.image(index)).permute(2, 0, 1)  # (3, H, W) uint8
        copy = self.copies is not None and self.copies[index]
        transform = self.copy_transform if copy else self.transform
        item = transform(pixels), int(self.targets[index])
        return item if self.metadata is None else (*item, self.metadata[index])
