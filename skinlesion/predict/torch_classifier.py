"""A model file's network as predict's Classifier: images in, class probabilities out, with the
model file's temperature, optional test-time augmentation and Grad-CAM overlays."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import nn

from skinlesion.model.checkpoint import input_transform, load_for_inference
from skinlesion.model.device import memory_format, select_device
from skinlesion.model.inference import TTA, log_probabilities
from skinlesion.model.info import ModelInfo
from skinlesion.predict.cam import save_predicted_class_maps


@dataclasses.dataclass
class TorchClassifier:
    """`model` (described by `info`, on `device`) predicting as evaluate does, with `tta`; with
    `cam_dir`, it also saves a Grad-CAM overlay of the predicted class per image there, named
    after the image."""

    model: nn.Module
    info: ModelInfo
    device: torch.device
    tta: TTA = "none"
    cam_dir: Path | None = None

    @classmethod
    def load(cls, path: Path, *, device: str = "auto", tta: TTA = "none", cam_dir: Path | None = None):
        """The model file `path` on `device` (auto, cuda, mps or cpu; a DeviceError names the
        parameter `device`)."""
        chosen = select_device(device, "device")
        model, info = load_for_inference(path, chosen)
        return cls(model, info, chosen, tta, cam_dir)

    def __call__(self, images: list[np.ndarray], names: list[str], metadata: np.ndarray | None) -> np.ndarray:
        """skinlesion.predict.run.Classifier's call."""
        info = self.info
        transform = input_transform(info)
        # decoded images are read-only arrays; torch.tensor copies them (from_numpy would warn)
        batch = torch.stack([transform(torch.tensor(image).permute(2, 0, 1)) for image in images])
        batch, inputs = self._on_device(batch, metadata)
        probabilities = self._probabilities(batch, inputs)
        if self.cam_dir is not None:
            save_predicted_class_maps(
                self.model, batch, probabilities, inputs, images, names, info.classes, self.cam_dir
            )
        return probabilities.numpy()

    def probabilities(self, batch: np.ndarray, metadata: np.ndarray | None) -> np.ndarray:
        """(N, C) probabilities of normalised float32 images (N, 3, S, S), with the model's
        temperature and TTA: what the call computes after normalising (the server's infer route)."""
        return self._probabilities(*self._on_device(torch.from_numpy(batch), metadata)).numpy()

    def _on_device(self, batch: torch.Tensor, metadata: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch = batch.to(self.device).contiguous(memory_format=memory_format(self.device))
        return batch, None if metadata is None else torch.from_numpy(metadata).to(self.device)

    def _probabilities(self, batch: torch.Tensor, inputs: torch.Tensor | None) -> torch.Tensor:
        with torch.no_grad():
            return log_probabilities(self.model, batch, self.tta, self.info.temperature, inputs).exp().cpu()
