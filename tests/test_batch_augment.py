"""The batched augmentation matches the per-image transforms' geometry, colour and randomness."""

import dataclasses

import numpy as np
import pytest
import torch
from conftest import published_augmentation
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from skinlesion.transforms.batched import BatchAugment, Draw
from skinlesion.transforms.normalize import IMAGENET_MEAN, IMAGENET_STD, normalize

PARAMS = published_augmentation()


def _images(batch=4, size=16, seed=0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (batch, 3, size, size), dtype=np.uint8))


def _plain(images: torch.Tensor) -> torch.Tensor:
    """What the per-image path gives without augmentation: normalised float."""
    return torch.stack([normalize()(image) for image in images])


def _with(draw: Draw, **changes) -> Draw:
    return dataclasses.replace(
        draw,
        **{
            name: torch.as_tensor(value, dtype=torch.float32).expand(len(draw.width)).clone()
            for name, value in changes.items()
        },
    )


def test_identity_draw_returns_the_normalised_images():
    images = _images()
    out = BatchAugment(PARAMS, 16).apply(images, Draw.identity(4, 16, 16))
    assert torch.allclose(out, _plain(images), atol=1e-5)


def test_flips_and_quarter_turns_are_exact():
    images = _images()
    augment = BatchAugment(PARAMS, 16)
    identity = Draw.identity(4, 16, 16)
    assert torch.allclose(augment.apply(images, _with(identity, flip_x=-1)), _plain(images.flip(-1)), atol=1e-5)
    assert torch.allclose(augment.apply(images, _with(identity, flip_y=-1)), _plain(images.flip(-2)), atol=1e-5)
    turned = augment.apply(images, _with(identity, angle=90))
    assert any(torch.allclose(turned, _plain(torch.rot90(images, k, dims=(-2, -1))), atol=1e-4) for k in (1, 3))


def test_crop_equals_torchvisions_resized_crop_inside_the_border():
    images = _images(size=32)
    draw = _with(
        Draw.identity(4, 32, 32), width=0.5, height=0.5, center_x=12.0, center_y=20.0
    )  # the 16x16 crop at (4, 12)
    out = BatchAugment(PARAMS, 32).apply(images, draw)
    cropped = TF.resized_crop(images.float() / 255, top=12, left=4, height=16, width=16, size=[32, 32], antialias=False)
    reference = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)(cropped)  # in float: torchvision rounds uint8 to uint8
    assert torch.allclose(out[..., 1:-1, 1:-1], reference[..., 1:-1, 1:-1], atol=1e-4)  # the rim reads beyond the crop


def test_rotation_fills_with_black_what_comes_from_outside_the_crop():
    white = torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)
    out = (
        BatchAugment(PARAMS, 32).apply(white, _with(Draw.identity(1, 32, 32), angle=45)) * 0.229 + 0.485
    )  # red channel back to [0, 1]
    assert out[0, 0, 0, 0] == pytest.approx(0, abs=1e-4) and out[0, 0, 16, 16] == pytest.approx(1, abs=1e-4)


def test_colour_adjustments_follow_torchvision():
    images = _images(batch=3, seed=1)
    augment = BatchAugment(PARAMS, 16)
    identity = Draw.identity(3, 16, 16)
    for name, function, factors in [
        ("brightness", TF.adjust_brightness, [0.8, 1.0, 1.2]),
        ("contrast", TF.adjust_contrast, [0.8, 1.0, 1.2]),
        ("saturation", TF.adjust_saturation, [0.8, 0.0, 1.2]),
        ("hue", TF.adjust_hue, [-0.1, 0.05, 0.3]),
    ]:
        out = augment.apply(images, _with(identity, **{name: factors}))
        floats = images.float() / 255
        reference = torch.stack(
            [
                v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)(function(image, factor))
                for image, factor in zip(floats, factors)
            ]
        )
        assert torch.allclose(out, reference, atol=1e-4), name


def test_draws_follow_the_params_and_the_generator():
    augment = BatchAugment(PARAMS, 16)
    draw = augment.draw(4000, 16, 16, torch.Generator().manual_seed(0))
    area = draw.width * draw.height
    assert area.min() >= 0.8 - 1e-6 and area.max() <= 1.0 + 1e-6
    assert (draw.width <= 1).all() and (draw.height <= 1).all()
    assert (draw.center_x - draw.width * 8 >= -1e-4).all() and (
        draw.center_x + draw.width * 8 <= 16 + 1e-4
    ).all()  # inside the image
    assert (
        abs(float((draw.flip_x < 0).float().mean()) - 0.5) < 0.03
        and abs(float((draw.flip_y < 0).float().mean()) - 0.5) < 0.03
    )
    assert draw.angle.abs().max() <= 30 and abs(float(draw.angle.mean())) < 1.0
    assert draw.brightness.min() >= 0.8 and draw.brightness.max() <= 1.2 and draw.hue.abs().max() <= 0.1
    images = _images()
    first = augment(images, torch.Generator().manual_seed(5))
    assert torch.equal(first, augment(images, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, augment(images, torch.Generator().manual_seed(6)))
    assert first.shape == (4, 3, 16, 16) and first.dtype == torch.float32


def test_switched_off_options_draw_nothing():
    params = PARAMS.model_copy(
        update=dict(h_flip=False, v_flip=False, rotation_range=0, color_jitter=(0, 0, 0, 0), crop_scale=(1.0, 1.0))
    )
    draw = BatchAugment(params, 16).draw(100, 16, 16, torch.Generator().manual_seed(0))
    assert (
        (draw.flip_x == 1).all() and (draw.angle == 0).all() and (draw.hue == 0).all() and (draw.brightness == 1).all()
    )
    assert torch.allclose(draw.width * draw.height, torch.ones(100))
