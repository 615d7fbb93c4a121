import numpy as np
import pytest
from PIL import Image

from skinlesion.data.images import crop_dark_border, load_image, shades_of_gray
from skinlesion.data.isic import ImageSource
from skinlesion.data.prepare import _decode, _init_worker


def test_shades_of_gray_neutralises_a_colour_cast():
    rng = np.random.default_rng(0)
    scene = rng.uniform(60, 200, (32, 32, 1)).repeat(3, axis=2)  # a grey scene
    cast = np.clip(scene * [1.3, 1.0, 0.6], 0, 255).astype(np.uint8)  # seen under warm light
    corrected = shades_of_gray(cast).astype(float)
    means = corrected.mean(axis=(0, 1))
    assert means.max() - means.min() < 0.05 * means.mean()
    assert np.ptp(cast.mean(axis=(0, 1))) > 40  # the cast was strong


def test_shades_of_gray_clips_instead_of_wrapping():
    image = np.zeros((16, 16, 3), np.uint8) + np.array([200, 120, 60], np.uint8)  # a red-brown cast
    image[0, 0] = 255  # a white highlight: green and blue gains push it past 255
    corrected = shades_of_gray(image)
    assert corrected.dtype == np.uint8
    assert corrected[0, 0, 1] == 255 and corrected[0, 0, 2] == 255  # saturated, not wrapped around
    assert corrected[5, 5, 2] > image[5, 5, 2]  # the blue of the cast was lifted


def test_dark_circular_frame_is_cropped_and_plain_images_kept():
    yy, xx = np.mgrid[:100, :100]
    inside = (yy - 50) ** 2 + (xx - 50) ** 2 < 45**2
    framed = np.where(inside[..., None], np.uint8(180), np.uint8(5)).astype(np.uint8)
    cropped = crop_dark_border(framed)
    assert 55 <= cropped.shape[0] <= 70 and cropped.shape[0] == cropped.shape[1]
    assert cropped.min() == 180  # no dark frame left
    plain = np.full((60, 80, 3), 120, np.uint8)
    assert crop_dark_border(plain) is plain


def test_load_image_with_both_options(tmp_path):
    yy, xx = np.mgrid[:200, :200]
    inside = (yy - 100) ** 2 + (xx - 100) ** 2 < 95**2
    framed = np.where(inside[..., None], np.array([200, 150, 100], np.uint8), np.uint8(0)).astype(np.uint8)
    Image.fromarray(framed).save(tmp_path / "framed.jpg", quality=95)
    plain = load_image(tmp_path / "framed.jpg", 32)
    both = load_image(tmp_path / "framed.jpg", 32, crop_border=True, color_constancy=True)
    assert plain[0, 0].max() < 30  # the frame's dark corner
    assert both[0, 0].min() > 100  # cropped away
    assert np.ptp(both.reshape(-1, 3).mean(axis=0)) < 10  # and colour-balanced


# Bad images: what prepare-split's decoder makes of each (decoded, or a reason to report).
def _save(path, array, **kwargs):
    Image.fromarray(array).save(path, **kwargs)
    return path


@pytest.fixture
def image_dir(tmp_path):
    folder = tmp_path / "ISIC_2019_Training_Input"
    folder.mkdir()
    return folder


def _decode_one(root, name, size=16):
    import functools

    _init_worker(ImageSource(root), functools.partial(load_image, size=size))
    return _decode(name)


def test_bad_image_outcomes(image_dir, monkeypatch):
    root = image_dir.parent
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = [255, 0, 0]  # left half red, right half blue
    rgb[:, 20:] = [0, 0, 255]
    (image_dir / "zero.jpg").write_bytes(b"")
    (image_dir / "text.jpg").write_text("not an image")
    _save(image_dir / "truncated.jpg", rgb, quality=95)
    (image_dir / "truncated.jpg").write_bytes((image_dir / "truncated.jpg").read_bytes()[:150])
    _save(image_dir / "png.jpg", rgb, format="PNG")
    Image.fromarray(rgb).convert("CMYK").save(image_dir / "cmyk.jpg", quality=95)
    _save(image_dir / "gray.jpg", rgb[..., 0], quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(rgb).save(image_dir / "rotated.jpg", quality=95, exif=exif)
    ramp = np.repeat((np.arange(40, dtype=np.uint16) * 1680)[None], 20, axis=0)  # 16-bit, 0 to 65520
    Image.fromarray(ramp).save(image_dir / "gray16.jpg", format="PNG")
    Image.fromarray(ramp).save(image_dir / "gray16tiff.jpg", format="TIFF")
    Image.fromarray(ramp.astype(np.float32)).save(image_dir / "float.jpg", format="TIFF")

    for name in ("zero", "text", "truncated"):
        pixels, reason = _decode_one(root, name)
        assert pixels is None and reason.startswith("cannot decode"), name
    assert _decode_one(root, "absent") == (None, "file not found")
    pixels, reason = _decode_one(root, "float")
    assert pixels is None and reason.startswith("cannot decode") and "32-bit float image" in reason
    for name in ("png", "cmyk", "gray", "gray16", "gray16tiff"):
        pixels, reason = _decode_one(root, name)
        assert reason == "" and pixels.shape == (16, 16, 3), name
    assert _decode_one(root, "png")[0][8, 2, 0] > 200  # a PNG named .jpg is read for what it is
    for name in ("gray16", "gray16tiff"):  # scaled to 8 bits, not clipped to white
        row = _decode_one(root, name)[0][8, :, 0]
        assert row[0] < 20 and 100 < row[8] < 160 and row[15] > 230, name
    rotated, _ = _decode_one(root, "rotated")
    assert rotated[2, 8, 0] > 150 and rotated[13, 8, 2] > 150  # upright: red on top, blue below

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 800 pixels > 2 x limit: a bomb
    pixels, reason = _decode_one(root, "gray")
    assert pixels is None and "decompression bomb" in reason
