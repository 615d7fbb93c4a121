"""A torch Dataset over a decoded image array and its manifest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from skinlesion.classes import CLASSES
from skinlesion.data.arrays import open_images

Transform = Callable[[torch.Tensor], torch.Tensor]


class ImageArrayDataset(Dataset):
    """Items are (transform(image), class index), and the image's metadata vector (float32)
    after them when `metadata` (encode_metadata's, one row per manifest row) is given; images
    come from a memory-mapped array.

    The array is opened lazily in each DataLoader worker: the dataset that is pickled to the
    workers carries only the path, never the pixels, so no worker copies the split. With
    `copy_transform`, the manifest's `augmented` rows (oversampled copies) get that transform
    instead of `transform`.
    """

    def __init__(
        self,
        array_path: str | Path,
        manifest: pd.DataFrame,
        transform: Transform,
        copy_transform: Transform | None = None,
        metadata: np.ndarray | None = None,
    ):
        self.array_path = Path(array_path)
        self.rows = manifest["row"].to_numpy()
        self.targets = manifest["label"].map(CLASSES.index).to_numpy()
        self.transform = transform
        self.copy_transform = copy_transform
        self.copies = manifest["augmented"].to_numpy(dtype=bool) if copy_transform else None
        if metadata is not None and len(metadata) != len(self.rows):
            raise ValueError(f"{len(metadata)} metadata rows for {len(self.rows)} images")
        self.metadata = None if metadata is None else torch.from_numpy(metadata)
        self._images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def image(self, index: int) -> np.ndarray:
        """The stored pixels of item `index`, before any transform: (H, W, 3) uint8."""
        if self._images is None:
            self._images = open_images(self.array_path)
        return np.array(self._images[self.rows[index]])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | tuple[torch.Tensor, int, torch.Tensor]:
        pixels = torch.from_numpy(self.image(index)).permute(2, 0, 1)  # (3, H, W) uint8
        copy = self.copies is not None and self.copies[index]
        transform = self.copy_transform if copy else self.transform
        item = transform(pixels), int(self.targets[index])
        return item if self.metadata is None else (*item, self.metadata[index])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None}
