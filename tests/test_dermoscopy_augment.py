"""Dermoscopy-specific augmentation: hairs and the dermoscope frame."""

import torch
from conftest import published_augmentation
from torchvision.transforms import v2

from skinlesion.transforms.augment import augment
from skinlesion.transforms.dermoscopy import DermoscopeFrame, Hairs

PUBLISHED = published_augmentation()


def _skin(size: int = 64) -> torch.Tensor:
    return torch.full((3, size, size), 180, dtype=torch.uint8)


def _draw(transform, image: torch.Tensor, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return transform(image)


def test_hairs_are_dark_thin_curves_drawn_the_same_for_the_same_seed():
    image = _skin()
    hairs = Hairs(1.0)
    first, again, other = _draw(hairs, image, 3), _draw(hairs, image, 3), _draw(hairs, image, 4)
    assert torch.equal(first, again) and not torch.equal(first, other)
    changed = (first != image).any(dim=0)
    assert 0.005 < changed.float().mean() < 0.3  # thin lines, not a veil
    assert first[:, changed].max() <= 84  # dark: at most 1.2 x 70
    assert torch.equal(_draw(Hairs(0.0), image, 3), image) and torch.equal(image, _skin())  # input untouched


def test_the_frame_darkens_the_corners_and_keeps_the_centre():
    image = _skin()
    framed = _draw(DermoscopeFrame(1.0), image, 0)
    assert torch.equal(framed, _draw(DermoscopeFrame(1.0), image, 0))
    corners = framed[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners.max() <= 25 and torch.equal(framed[:, 24:40, 24:40], image[:, 24:40, 24:40])


def test_with_both_off_the_augmentation_draws_exactly_the_published_transforms():
    image = torch.randint(0, 256, (3, 80, 80), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    published = v2.Compose(
        [
            v2.RandomResizedCrop(64, scale=(0.8, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.RandomRotation(30),
            v2.ColorJitter(0.2, 0.2, 0.2, 0.1),
        ]
    )
    assert torch.equal(_draw(augment(params=PUBLISHED, size=64), image, 5), _draw(published, image, 5))
    both = PUBLISHED.model_copy(update={"hair": 1.0, "frame": 1.0})
    drawn = _draw(augment(params=both, size=64), image, 5)
    assert drawn.shape == (3, 64, 64) and drawn[:, 0, 0].max() <= 84  # a framed corner (or a hair over it)
