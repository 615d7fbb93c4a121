"""Decoding an image file into the array that prepare-split stores, and the optional
preprocessing of the winning ISIC 2019 entry (Gessert et al., 2019).

Border cropping and colour constancy are off by default, so the published E2E-DenseNetSkin
recipe stays the default. Like the resize, they run once per image, before it is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

DARK = 20  # grey level below which a pixel counts as the dermoscope's dark border


def shades_of_gray(image: np.ndarray, power: float = 6.0) -> np.ndarray:
    """Shades of Gray colour constancy (Finlayson and Trezzi, 2004) with Minkowski norm `power`.

    Each channel is scaled so that the estimated illuminant becomes neutral grey. Values are
    clipped to [0, 255] before the cast to uint8, so bright pixels saturate instead of
    wrapping around. image: (H, W, 3) uint8; returns a new (H, W, 3) uint8 array.
    """
    pixels = image.astype(np.float64)
    illuminant = np.power(np.power(pixels, power).mean(axis=(0, 1)), 1.0 / power)  # (3,)
    illuminant = illuminant / max(np.linalg.norm(illuminant), 1e-12)
    gains = 1.0 / (illuminant * np.sqrt(3.0) + 1e-12)
    return np.clip(pixels * gains, 0, 255).astype(np.uint8)


def crop_dark_border(image: np.ndarray, threshold: int = DARK) -> np.ndarray:
    """Cut away the dark circular frame that many dermoscopes leave around the field of view.

    When all four corners are dark, the bright field is taken as a circle (centre and
    radius from the bounding box of the pixels above `threshold`) and the largest square
    inside it is kept. Images without dark corners are returned unchanged.
    image: (H, W, 3) uint8; returns a view or the image itself.
    """
    gray = image.mean(axis=2)
    height, width = gray.shape
    patch = max(1, min(height, width) // 20)
    corners = [gray[:patch, :patch], gray[:patch, -patch:], gray[-patch:, :patch], gray[-patch:, -patch:]]
    if max(float(c.mean()) for c in corners) >= threshold:
        return image
    rows, cols = np.flatnonzero((gray > threshold).any(axis=1)), np.flatnonzero((gray > threshold).any(axis=0))
    if len(rows) == 0:
        return image  # all dark: nothing to crop to
    centre_y, centre_x = (rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2
    radius = min(rows[-1] - rows[0], cols[-1] - cols[0]) / 2
    half = max(1, int(radius / np.sqrt(2)))
    top, left = max(0, int(centre_y) - half), max(0, int(centre_x) - half)
    return image[top : top + 2 * half, left : left + 2 * half]


def _to_rgb(image: Image.Image) -> Image.Image:
    """`image` as 8-bit RGB. 16-bit grayscale (PIL modes I;16*, I) is scaled down, not clipped
    (a plain convert would turn everything above 255 white); float images are refused."""
    if image.mode.startswith("I"):
        levels = np.clip(np.asarray(image, dtype=np.float64), 0, 65535) / 257.0
        image = Image.fromarray(np.round(levels).astype(np.uint8), mode="L")
    elif image.mode == "F":
        raise ValueError("32-bit float image: save it as 8- or 16-bit")
    return image.convert("RGB")


def load_image(
    file: str | Path | BinaryIO, size: int, *, crop_border: bool = False, color_constancy: bool = False
) -> np.ndarray:
    """Decode an image file to an RGB uint8 array of shape (size, size, 3).

    JPEGs are decoded at reduced scale when much larger than `size` (PIL's draft mode),
    which is several times faster than a full decode followed by a resize. EXIF
    orientation is applied; grayscale (8- or 16-bit), CMYK and palette images are converted
    to RGB.
    crop_border cuts away a dark dermoscope frame before resizing; color_constancy applies
    Shades of Gray after it (both below).
    """
    with Image.open(file) as image:
        # cropping keeps about 70% of the side, so decode larger to keep the detail
        image.draft("RGB", (2 * size, 2 * size) if crop_border else (size, size))
        image = _to_rgb(ImageOps.exif_transpose(image))
        if crop_border:
            image = Image.fromarray(np.ascontiguousarray(crop_dark_border(np.asarray(image))))
        pixels = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    return shades_of_gray(pixels) if color_constancy else pixels


def decode_or_reason(
    open_file: Callable[[], BinaryIO], decode: Callable[[BinaryIO], np.ndarray]
) -> tuple[np.ndarray | None, str]:
    """`decode` of the file `open_file()` opens: (pixels, "") or, for a missing or unreadable
    file, (None, the reason), so that one bad image can be named and the others still read."""
    try:
        with open_file() as file:
            return decode(file), ""
    except FileNotFoundError:
        return None, "file not found"
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return None, f"cannot decode: {error}"
