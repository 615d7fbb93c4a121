"""The train-time augmentation for a whole batch at once, on the training device.

`training.augment_on: device` moves the published augmentation (random resized crop, flips,
rotation, colour jitter) out of the DataLoader workers: they only copy uint8 pixels, and the
batch is augmented after its transfer, with its own random draw for every image. Crop,
flips and rotation are one affine resampling per image (one `grid_sample` for the batch);
the colour jitter follows torchvision's formulas with per-image factors. The draw is made
on the CPU (the same generator gives the same draw on any device) and reaches the device in
one copy that does not make the host wait; nothing else crosses between host and device.

Differences from torchvision's per-image transforms, all small: one bilinear interpolation
instead of one per geometric step; pixels stay float between the steps instead of being
rounded to uint8; the crop's corner is drawn from a continuous range; and the jitter runs
in the fixed order brightness, contrast, saturation, hue (torchvision shuffles the order).
As there, pixels that the rotation brings in from outside the crop are black.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn
from torch.nn import functional as F

from skinlesion.transforms.normalize import IMAGENET_MEAN, IMAGENET_STD
from skinlesion.transforms.params import AugmentationParams

RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's aspect-ratio range, as in the per-image path
ATTEMPTS = 10  # RandomResizedCrop's tries before it falls back to the whole image
GRAY = (0.2989, 0.587, 0.114)  # torchvision's RGB to grayscale weights


@dataclasses.dataclass
class Draw:
    """The random parameters of one batch; each field has one entry per image.

    Crop width and height are fractions of the image's, its centre in pixels from the top
    left corner; flips are +1 (none) or -1; the rotation angle is in degrees.
    """

    width: torch.Tensor
    height: torch.Tensor
    center_x: torch.Tensor
    center_y: torch.Tensor
    flip_x: torch.Tensor
    flip_y: torch.Tensor
    angle: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor

    @classmethod
    def identity(cls, batch: int, height: int, width: int) -> Draw:
        ones, zeros = torch.ones(batch), torch.zeros(batch)
        return cls(ones, ones, ones * width / 2, ones * height / 2, ones, ones, zeros, ones, ones, ones, zeros)


class BatchAugment(nn.Module):
    """uint8 (B, 3, H, W) -> augmented, normalised float32 (B, 3, size, size), on the device
    the module was moved to (`.to(device)`, as for a model)."""

    def __init__(
        self,
        params: AugmentationParams,
        size: int,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ):
        super().__init__()
        self.params, self.size = params, size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def draw(self, batch: int, height: int, width: int, generator: torch.Generator) -> Draw:
        """Random parameters for `batch` images of `height` x `width`, as the per-image transforms draw them."""
        p = self.params

        def uniform(low: float, high: float) -> torch.Tensor:
            return low + (high - low) * torch.rand(batch, generator=generator)

        crop_w, crop_h = torch.ones(batch), torch.ones(batch)  # the whole image unless a try fits
        pending = torch.ones(batch, dtype=torch.bool)
        for _ in range(ATTEMPTS):
            area = uniform(*p.crop_scale)
            aspect = torch.exp(uniform(math.log(RATIO[0]), math.log(RATIO[1])))
            w, h = torch.sqrt(area * aspect), torch.sqrt(area / aspect)  # fractions of the sides
            fits = pending & (w <= 1) & (h <= 1)
            crop_w, crop_h = torch.where(fits, w, crop_w), torch.where(fits, h, crop_h)
            pending &= ~fits
        center_x = (crop_w + (1 - crop_w) * torch.rand(batch, generator=generator) * 2) * width / 2
        center_y = (crop_h + (1 - crop_h) * torch.rand(batch, generator=generator) * 2) * height / 2

        def flip(enabled: bool) -> torch.Tensor:
            if not enabled:
                return torch.ones(batch)
            return torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0)

        def factor(amount: float) -> torch.Tensor:
            return uniform(max(0.0, 1 - amount), 1 + amount)

        brightness, contrast, saturation, hue = p.color_jitter
        return Draw(
            width=crop_w,
            height=crop_h,
            center_x=center_x,
            center_y=center_y,
            flip_x=flip(p.h_flip),
            flip_y=flip(p.v_flip),
            angle=uniform(-p.rotation_range, p.rotation_range),
            brightness=factor(brightness),
            contrast=factor(contrast),
            saturation=factor(saturation),
            hue=uniform(-hue, hue),
        )

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        batch, _, height, width = images.shape
        return self.apply(images, self.draw(batch, height, width, generator))

    def apply(self, images: torch.Tensor, draw: Draw) -> torch.Tensor:
        """Augment `images` (uint8) with the parameters of `draw` (on the CPU); normalised float32 out."""
        hue_moves = bool((draw.hue != 0).any())
        draw = _to_device(draw, images.device)
        pixels = images.float() / 255
        pixels = geometry(pixels, draw, self.size)
        pixels = color(pixels, draw, hue_moves)
        return (pixels - self.mean) / self.std


def _to_device(draw: Draw, device: torch.device) -> Draw:
    """`draw` on `device`, in one copy; from pinned memory on CUDA, so the host does not wait."""
    names = [field.name for field in dataclasses.fields(draw)]
    values = torch.stack([getattr(draw, name).float() for name in names])
    if device.type == "cuda":
        values = values.pin_memory()
    return Draw(*values.to(device, non_blocking=True).unbind())


def geometry(pixels: torch.Tensor, draw: Draw, size: int) -> torch.Tensor:
    """Crop, resize to `size`, flip and rotate every image of the batch in one resampling."""
    batch, _, height, width = pixels.shape
    radians = torch.deg2rad(draw.angle)
    cos, sin = torch.cos(radians), torch.sin(radians)
    # output coordinates (normalised, square) -> rotated -> flipped -> scaled into the crop
    theta = torch.zeros(batch, 2, 3, device=pixels.device)
    theta[:, 0, 0] = draw.width * draw.flip_x * cos
    theta[:, 0, 1] = -draw.width * draw.flip_x * sin
    theta[:, 0, 2] = 2 * draw.center_x / width - 1
    theta[:, 1, 0] = draw.height * draw.flip_y * sin
    theta[:, 1, 1] = draw.height * draw.flip_y * cos
    theta[:, 1, 2] = 2 * draw.center_y / height - 1
    grid = F.affine_grid(theta, [batch, 3, size, size], align_corners=False)
    out = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # what the rotation brings in from outside the crop is black, as with RandomRotation
    rotation = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    base = F.affine_grid(
        torch.cat([rotation, torch.zeros(batch, 2, 1, device=pixels.device)], 2),
        [batch, 1, size, size],
        align_corners=False,
    )
    inside = (base.abs() <= 1 + 1e-6).all(dim=-1)
    return out * inside.unsqueeze(1)


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def _gray(pixels: torch.Tensor) -> torch.Tensor:
    r, g, b = pixels.unbind(dim=1)
    return (GRAY[0] * r + GRAY[1] * g + GRAY[2] * b).unsqueeze(1)


def _blend(pixels: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    ratio = _per_image(ratio)
    return (ratio * pixels + (1 - ratio) * other).clamp(0, 1)


def color(pixels: torch.Tensor, draw: Draw, hue_moves: bool) -> torch.Tensor:
    """torchvision's brightness, contrast, saturation and hue adjustments, per-image factors
    (`hue_moves` False: no image's hue shift is non-zero, so that step is skipped)."""
    pixels = (pixels * _per_image(draw.brightness)).clamp(0, 1)
    pixels = _blend(pixels, _gray(pixels).mean(dim=(1, 2, 3), keepdim=True), draw.contrast)
    pixels = _blend(pixels, _gray(pixels), draw.saturation)
    return shift_hue(pixels, draw.hue) if hue_moves else pixels


def shift_hue(pixels: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of each image by its `shift` (a fraction of the colour circle)."""
    r, g, b = pixels.unbind(dim=1)
    high, _ = pixels.max(dim=1)
    low, _ = pixels.min(dim=1)
    chroma = high - low
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue = (
        torch.where(high == r, ((g - b) / safe) % 6, torch.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    )
    hue = torch.where(chroma > 0, hue, torch.zeros_like(hue))
    hue = (hue + shift.view(-1, 1, 1)) % 1.0
    saturation = torch.where(
        high > 0, chroma / torch.where(high > 0, high, torch.ones_like(high)), torch.zeros_like(high)
    )
    # HSV back to RGB: each channel from its own offset on the colour circle
    k = torch.stack([(offset + hue * 6) % 6 for offset in (5.0, 3.0, 1.0)], dim=1)
    ramp = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return high.unsqueeze(1) * (1 - saturation.unsqueeze(1) * ramp)
