"""Test-time augmentation and temperature scaling, as evaluate and predict apply them."""

import numpy as np
import pytest
import torch
from conftest import model_info
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from skinlesion.model.architectures import build_model
from skinlesion.model.checkpoint import load_checkpoint
from skinlesion.model.inference import fit_temperature, log_probabilities, predict, tta_views
from skinlesion.model.model_file import read_checkpoint, save_checkpoint
from skinlesion.predict.torch_classifier import TorchClassifier


def _symmetric_images(size: int = 32) -> torch.Tensor:
    """Images that every rotation by 90 degrees and every mirroring leaves unchanged."""
    centre = (size - 1) / 2
    y, x = np.mgrid[:size, :size]
    radius = np.hypot(y - centre, x - centre)
    channels = [np.cos(radius / 3), np.sin(radius / 5), radius / size]
    return torch.tensor(np.stack(channels), dtype=torch.float32)[None].repeat(2, 1, 1, 1)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("densenet121", 8, "none").eval()


@torch.no_grad()
def test_dihedral_tta_of_a_symmetric_image_equals_no_tta_and_probabilities_sum_to_one():
    model, images = _model(), _symmetric_images()
    assert len(tta_views(images, "flips")) == 2 and len(tta_views(images, "dihedral")) == 8
    plain = log_probabilities(model, images, "none").exp()
    for tta in ("flips", "dihedral"):
        assert torch.allclose(log_probabilities(model, images, tta).exp(), plain, atol=1e-6)
    torch.manual_seed(1)
    noise = torch.randn(3, 3, 32, 32)
    for tta in ("none", "flips", "dihedral"):
        assert torch.allclose(log_probabilities(model, noise, tta).exp().sum(dim=1), torch.ones(3), atol=1e-5)
    views = tta_views(noise, "dihedral")  # all eight different views, the first the image itself
    assert torch.equal(views[0], noise) and len({v.numpy().tobytes() for v in views}) == 8
    with pytest.raises(ValueError, match="square"):
        tta_views(torch.zeros(1, 3, 32, 40), "dihedral")


def test_a_fitted_temperature_lowers_the_nll_it_was_fitted_on_and_keeps_the_predictions():
    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 8, (400,), generator=generator)
    logits = torch.randn(400, 8, generator=generator)
    logits[torch.arange(400), targets] += 1.5  # right more often than not, but far too confident:
    logits *= 6
    temperature = fit_temperature(logits, targets)
    before = nn.functional.cross_entropy(logits, targets)
    after = nn.functional.cross_entropy(logits / temperature, targets)
    assert temperature > 1.5 and after < before * 0.8
    # log-probabilities give the same temperature as the logits they come from
    assert fit_temperature(torch.log_softmax(logits, dim=1), targets) == pytest.approx(temperature, rel=1e-4)
    loader = DataLoader(TensorDataset(logits, targets), batch_size=64)
    scaled, _, loss = predict(nn.Identity(), loader, torch.device("cpu"), temperature=temperature)
    assert loss == pytest.approx(float(after), rel=1e-5)
    assert (scaled.argmax(axis=1) == logits.argmax(dim=1).numpy()).all()


def test_the_temperature_travels_in_the_model_file_and_a_file_without_one_means_one(tmp_path):
    model = _model()
    save_checkpoint(tmp_path / "old.pt", model, model_info())
    save_checkpoint(tmp_path / "calibrated.pt", model, model_info(temperature=2.5))
    _, old = load_checkpoint(tmp_path / "old.pt")
    _, calibrated = load_checkpoint(tmp_path / "calibrated.pt")
    assert old.temperature == 1.0 and calibrated.temperature == 2.5
    assert "temperature" not in read_checkpoint(tmp_path / "old.pt")  # stored only when fitted
    images = [np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)]
    cpu = torch.device("cpu")
    plain = TorchClassifier(model, old, cpu)(images, ["a"], None)
    tempered = TorchClassifier(model, calibrated, cpu)(images, ["a"], None)
    expected = torch.softmax(torch.log(torch.from_numpy(plain)).double() / 2.5, dim=1).numpy()
    assert tempered == pytest.approx(expected, abs=1e-5) and plain.argmax() == tempered.argmax()
