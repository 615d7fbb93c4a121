import re
import urllib.error
from typing import get_args

import pytest
import torch
import torchvision

from skinlesion.classes import CLASSES
from skinlesion.errors import DeviceError, WeightsError
from skinlesion.model.architectures import ARCHITECTURES, build_model
from skinlesion.model.checkpoint import load_checkpoint
from skinlesion.model.device import available_devices, select_device
from skinlesion.model.info import ModelInfo
from skinlesion.model.model_file import save_checkpoint
from skinlesion.model.names import Architecture


def _old_densenet_keys(state):
    """torchvision's published densenet files name 'norm1' as 'norm.1' (and so on)."""
    return {
        re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key): value for key, value in state.items()
    }


def test_fresh_model_has_eight_outputs():
    model = build_model("densenet121", len(CLASSES), "none").eval()
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 8)


def test_the_params_name_every_backbone_there_is():
    assert get_args(Architecture) == tuple(ARCHITECTURES)  # model.name's choices, checked without torch


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
    info = ModelInfo(arch="densenet121", classes=CLASSES, image_size=64, mean=(0.5,) * 3, std=(0.2,) * 3, epoch=3)
    save_checkpoint(tmp_path / "model.pt", model, info)
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


def test_a_model_file_from_before_the_typed_record_still_loads(tmp_path):
    """A file as the first versions wrote it (no border crop, colour constancy, metadata,
    temperature or unknown threshold): loaded with the defaults of what it lacks."""
    model = build_model("densenet121", 8, "none").eval()
    old = {"arch": "densenet121", "classes": list(CLASSES), "image_size": 64, "mean": [0.5] * 3, "std": [0.2] * 3}
    torch.save({"state_dict": model.state_dict(), **old, "epoch": 2, "val_balanced_accuracy": 0.4}, tmp_path / "old.pt")
    _, info = load_checkpoint(tmp_path / "old.pt", CLASSES)
    assert (info.crop_border, info.color_constancy, info.metadata, info.temperature) == (False, False, (), 1.0)
    assert info.unknown_threshold is None and not info.is_ensemble and not info.uses_metadata
    assert info.classes == CLASSES and info.epoch == 2


def test_the_stored_record_keeps_the_files_keys_and_their_order():
    """What train writes today, key for key and in order, so a rewritten file has the same bytes."""
    stored = {
        "arch": "densenet121",
        "classes": list(CLASSES),
        "image_size": 64,
        "crop_border": False,
        "color_constancy": False,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "epoch": 4,
        "val_balanced_accuracy": 0.6,
        "val_accuracy": 0.8,
        "val_loss": 0.5,
        "unknown_threshold": 0.3,
    }
    info = ModelInfo.from_stored(stored, "model.pt")
    assert list(info.stored().items()) == list(stored.items())
    calibrated = ModelInfo.from_stored({**stored, "temperature": 1.7}, "model.pt")
    assert list(calibrated.stored()) == [*list(stored)[:-1], "temperature", "unknown_threshold"]
    with pytest.raises(WeightsError, match=r"^model.pt: not a model of this project \(missing \['image_size'\]\)"):
        ModelInfo.from_stored({key: value for key, value in stored.items() if key != "image_size"}, "model.pt")
