"""Dermoscopy-specific augmentation: synthetic hairs, and the dark circular dermoscope frame.

Both are artefacts of how dermoscopy images are taken, not of the lesion, and both are
common in ISIC 2019 (the BCN_20000 images mostly carry the frame); drawing them over
training images at random teaches the model to look past them. Each acts on one uint8
image (3, H, W) with probability p, and draws from torch's global generator, so the train
stage's per-epoch seeding makes them deterministic for the seed.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _uniform(low: float, high: float) -> float:
    return float(torch.empty(()).uniform_(low, high))


class RandomArtefact(nn.Module):
    """An artefact drawn over a uint8 image (3, H, W) with probability `p`; `draw` draws it."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.draw(image) if torch.rand(()) < self.p else image

    def draw(self, image: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Hairs(RandomArtefact):
    """One to eight dark hairs over the image: quadratic Bezier curves between random points,
    1-3 px wide at 224 px (scaled with the image), in one dark brown to black colour."""

    def draw(self, image: torch.Tensor) -> torch.Tensor:
        _, height, width = image.shape
        side = max(height, width)
        steps = torch.linspace(0, 1, 4 * side)[:, None]
        mask = torch.zeros(height, width)
        for _ in range(int(torch.randint(1, 9, ()))):
            start, control, end = torch.rand(3, 2) * torch.tensor([width - 1, height - 1])
            curve = (1 - steps) ** 2 * start + 2 * (1 - steps) * steps * control + steps**2 * end
            mask[curve[:, 1].round().long(), curve[:, 0].round().long()] = 1
        thickness = 2 * round(_uniform(0, 1) * side / 224) + 1  # odd, so the curve stays centred
        mask = F.max_pool2d(mask[None, None], thickness, stride=1, padding=thickness // 2)[0, 0].bool()
        value = _uniform(10, 70)
        colour = torch.tensor([value * 1.2, value, value * 0.8]).round().to(image.dtype)
        out = image.clone()
        out[:, mask] = colour[:, None]
        return out


class DermoscopeFrame(RandomArtefact):
    """The dark circular frame of a dermoscope: everything farther than a radius of 0.45-0.62
    image sides from a centre near the middle turns almost black, over a soft edge, so the
    corners (and at small radii the edges' middles) are covered."""

    def draw(self, image: torch.Tensor) -> torch.Tensor:
        _, height, width = image.shape
        side = min(height, width)
        radius = _uniform(0.45, 0.62) * side
        centre_x = width / 2 + _uniform(-0.05, 0.05) * width
        centre_y = height / 2 + _uniform(-0.05, 0.05) * height
        y, x = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
        distance = torch.hypot(y - centre_y, x - centre_x)
        outside = ((distance - radius) / max(1.0, 0.02 * side)).clamp(0, 1)
        dark = _uniform(0, 25)
        return (image * (1 - outside) + dark * outside).round().to(image.dtype)
