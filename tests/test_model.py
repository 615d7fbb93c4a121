import re
import urllib.error

import pytest
import torch
import torchvision

from skinlesion.classes import CLASSES
from skinlesion.errors import DeviceError, WeightsError
from skinlesion.model.architectures import build_model
from skinlesion.model.checkpoint import load_checkpoint, save_checkpoint
from skinlesion.model.device import available_devices, select_device


def _old_densenet_keys(state):
    """torchvision's published densenet files name 'norm1' as 'norm.1' (and so on)."""
    return {
        re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key): value for key, value in state.items()
    }


def test_fresh_model_has_eight_outputs():
    model = build_model("densenet121", len(CLASSES), "none").eval()
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 8)


def test_weights_file_in_torchvision_format_loads_strictly(tmp_path):
    reference = torchvision.models.densenet121(weights=None)
    state = _old_densenet_keys(reference.state_dict())
    assert "features.denseblock1.denselayer1.norm.1.weight" in state
    torch.save(state, tmp_path / "densenet121-a639ec97.pth")
    model = build_model("densenet121", 8, str(tmp_path / "densenet121-a639ec97.pth"))
    assert torch.equal(model.features.conv0.weight, reference.features.conv0.weight)
    assert model.classifier.out_features == 8


def test_weights_of_another_architecture_fail_loudly(tmp_path):
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(WeightsError, match="does not fit densenet121"):
        build_model("densenet121", 8, str(tmp_path / "resnet.pth"))


def test_imagenet_without_network_says_what_to_do(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError, match=r"densenet121-a639ec97.pth.*model.weights.*none"):
        build_model("densenet121", 8, "imagenet")


def test_checkpoint_round_trip(tmp_path):
    model = build_model("densenet121", 8, "none").eval()
    info = dict(arch="densenet121", classes=list(CLASSES), image_size=64, mean=[0.5] * 3, std=[0.2] * 3, epoch=3)
    save_checkpoint(tmp_path / "model.pt", model, **info)
    loaded, loaded_info = load_checkpoint(tmp_path / "model.pt")
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(images), model(images))
    assert loaded_info == info


def test_a_device_this_machine_lacks_is_named_with_the_setting_and_what_there_is():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError, match=r"^--device is cuda, but this machine has no CUDA device \(available: \["):
        select_device("cuda", "--device")
    with pytest.raises(DeviceError, match=r"^training.device is cuda"):
        select_device("cuda")
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto") == torch.device(available_devices()[0]) and available_devices()[-1] == "cpu"
