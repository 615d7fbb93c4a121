"""Grad-CAM (Selvaraju et al., 2017): where in the image the evidence for a class lies.

Hand-written rather than taken from the grad-cam package: on DenseNet121 that package pairs
the post-ReLU maps with pre-ReLU gradients, because DenseNet's last ReLU runs in place (see
GradCAM below; tests/test_cam_reference.py compares both). The params section `gradcam`,
which test images the gradcam stage explains, is skinlesion.evaluation.params's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import nn

from skinlesion.config import View
from skinlesion.evaluation.params import GradcamParams
from skinlesion.model.architectures import cam_layer
from skinlesion.model.ensemble import fold_models
from skinlesion.model.inference import forward
from skinlesion.model.names import TrainingDevice


class GradcamRun(View):
    """The params the gradcam stage reads: it runs where evaluate does."""

    training: TrainingDevice
    gradcam: GradcamParams


class GradCAM:
    """Grad-CAM on `layer` of `model`; use as a context manager so the hooks are removed.

    The layer's forward hook hands a clone of its output onward and keeps it. DenseNet's
    forward applies an in-place ReLU to that output (of `features.norm5`), so the kept maps
    end up as the post-ReLU features the classifier pools; their gradient is taken after the
    forward pass, i.e. for that last version, as Grad-CAM defines it.
    """

    def __init__(self, model: nn.Module, layer: nn.Module):
        self.model, self.layer = model, layer
        self._activations: torch.Tensor | None = None
        self._handle = None

    def __enter__(self) -> GradCAM:
        self._handle = self.layer.register_forward_hook(self._keep)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()

    def _keep(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        self._activations = output.clone()
        return self._activations

    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor | None = None, metadata: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Maps for class `targets[i]` of image i: (N, H, W) in [0, 1], plus softmax (N, C).

        images: (N, 3, H, W) normalised float; the caller's tensor is not modified.
        targets: (N,) class indices; None explains each image's predicted class.
        metadata: (N, F), for a model that fuses metadata (the maps explain the image part).
        """
        self.model.eval()
        self.model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            logits = forward(self.model, images.detach().clone(), metadata)
            self._activations.retain_grad()  # after any in-place change made by the forward
            if targets is None:
                targets = logits.argmax(dim=1)
            logits.gather(1, targets.view(-1, 1)).sum().backward()
        activations, gradients = self._activations.detach(), self._activations.grad.detach()
        weights = gradients.mean(dim=(2, 3), keepdim=True)  # (N, K, 1, 1): channel importance
        cams = torch.relu((weights * activations).sum(dim=1, keepdim=True))  # (N, 1, h, w)
        # scaled to [0, 1] per image at feature-map resolution, then upsampled (as pytorch-grad-cam)
        low = cams.amin(dim=(1, 2, 3), keepdim=True)
        cams = (cams - low) / ((cams.amax(dim=(1, 2, 3), keepdim=True) - low) + 1e-7)
        cams = nn.functional.interpolate(cams, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return cams, torch.softmax(logits.detach(), dim=1)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a (H, W) map in [0, 1] over an (H, W, 3) uint8 image as a jet heatmap."""
    heat = colormaps["jet"](cam)[..., :3] * 255
    return (image * (1 - alpha) + heat * alpha).clip(0, 255).astype(np.uint8)


def save_overlays(image: np.ndarray, cams: dict[str, np.ndarray], title: str, path: str | Path) -> None:
    """A PNG: the image, then one heatmap overlay per entry of `cams` (panel title: its key)."""
    fig = Figure(figsize=(2.1 * (1 + len(cams)), 2.5))
    axes = fig.subplots(1, 1 + len(cams), squeeze=False)[0]
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=7)
    for ax, (name, cam) in zip(axes[1:], cams.items()):
        ax.imshow(overlay(image, cam))
        ax.set_title(name, fontsize=7)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")


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


def class_maps(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, metadata: torch.Tensor | None = None
) -> torch.Tensor:
    """Grad-CAM maps of class `targets[i]` for image i, (N, H, W) in [0, 1], on each model's
    cam_layer; for a FoldEnsemble, the mean of its fold models' maps."""
    maps = []
    for member in fold_models(model):
        with GradCAM(member, cam_layer(member)) as gradcam:
            maps.append(gradcam(images, targets, metadata)[0])
    return maps[0] if len(maps) == 1 else torch.stack(maps).mean(dim=0)


def maps_note(model: nn.Module) -> str:
    """What a map's title says of its models: nothing for one model, the mean for an ensemble."""
    count = len(fold_models(model))
    return f", mean of {count} fold models" if count > 1 else ""


def explain_samples(
    model: nn.Module,
    images: torch.Tensor,
    pixels: list[np.ndarray],
    samples: pd.DataFrame,
    classes: list[str],
    folder: Path,
    metadata: torch.Tensor | None = None,
) -> None:
    """One PNG per row of `samples` (choose_samples'): the image, the map for the predicted class
    and, when the prediction is wrong, the map for the true class (class_maps: for the fold
    models' ensemble, its prediction and the mean of their maps).

    images: (N, 3, H, W) model inputs; pixels: the same N images as stored, (H, W, 3) uint8;
    metadata: (N, F), for a model that fuses metadata. The maps are computed on the model's device.
    """
    model.eval()
    device = next(model.parameters()).device
    images = images.to(device)
    metadata = metadata.to(device) if metadata is not None else None
    with torch.no_grad():
        probabilities = torch.softmax(forward(model, images, metadata), dim=1).cpu()
    predicted_cams = class_maps(model, images, probabilities.argmax(dim=1).to(device), metadata).cpu()
    true = torch.tensor([classes.index(label) for label in samples["label"]], device=device)
    true_cams = class_maps(model, images, true, metadata).cpu()
    note = maps_note(model)
    for i, row in enumerate(samples.itertuples(index=False)):
        predicted = int(probabilities[i].argmax())
        cams = {f"Grad-CAM: {classes[predicted]} (predicted{note})": predicted_cams[i].numpy()}
        if not row.correct:
            cams[f"Grad-CAM: {row.label} (true{note})"] = true_cams[i].numpy()
        title = f"{row.image}: true {row.label} | predicted {classes[predicted]} (p={probabilities[i, predicted]:.2f})"
        verdict = "correct" if row.correct else "wrong"
        save_overlays(pixels[i], cams, title, folder / f"{row.label}_{verdict}_{row.image}.png")
