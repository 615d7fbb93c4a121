"""Optional preprocessing from the winning ISIC 2019 entry (Gessert et al., 2019).

Both are off by default, so the published E2E-DenseNetSkin recipe stays the default. They
run once, in prepare-split, on each image before it is resized.
"""

from __future__ import annotations

import numpy as np

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
