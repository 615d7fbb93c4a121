import numpy as np
import pandas as pd
import torch
from torch import nn

from skinlesion.evaluation.gradcam import GradCAM, choose_samples, overlay, save_overlays
from skinlesion.evaluation.params import GradcamParams
from skinlesion.model.architectures import build_model, cam_layer


def _red_detector():
    """Class 0 scores how red the image is; class 1 how blue; one 1x1 conv keeps positions."""
    conv = nn.Conv2d(3, 2, kernel_size=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]).view(2, 3, 1, 1))
    head = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))
    model = nn.Sequential(conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    return model, conv


def test_map_points_at_the_evidence_for_the_class():
    model, layer = _red_detector()
    image = torch.zeros(1, 3, 16, 16)
    image[0, 0, :6, :6] = 1.0  # red square, top left
    image[0, 2, 10:, 10:] = 1.0  # blue square, bottom right
    with GradCAM(model, layer) as cam:
        red, _ = cam(image, torch.tensor([0]))
        blue, _ = cam(image, torch.tensor([1]))
    assert red[0, :6, :6].mean() > 0.9 and red[0, 10:, 10:].max() < 0.1
    assert blue[0, 10:, 10:].mean() > 0.9 and blue[0, :6, :6].max() < 0.1


def test_densenet_maps_shape_range_and_no_side_effects():
    torch.manual_seed(0)
    model = build_model("densenet121", 8, "none").eval()
    images = torch.randn(2, 3, 64, 64)
    before = images.clone()
    with GradCAM(model, cam_layer(model)) as cam:
        maps, probabilities = cam(images)
    assert maps.shape == (2, 64, 64)
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(2))
    assert torch.equal(images, before)
    assert not cam_layer(model)._forward_hooks  # hooks removed on exit
    with torch.no_grad():  # the model's own forward is unchanged by the hook's clone
        assert torch.allclose(torch.softmax(model(images), 1), probabilities, atol=1e-6)


def test_overlay_keeps_shape_and_type(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    blended = overlay(image, np.linspace(0, 1, 64).reshape(8, 8))
    assert blended.shape == (8, 8, 3) and blended.dtype == np.uint8 and blended.max() > 0
    save_overlays(image, {"predicted": np.zeros((8, 8)), "true": np.ones((8, 8))}, "title", tmp_path / "x.png")
    assert (tmp_path / "x.png").read_bytes().startswith(b"\x89PNG")


def test_maps_depend_on_the_weights():
    """Adebayo et al.'s sanity check: re-randomising the weights must change the explanation."""
    torch.manual_seed(0)
    model = build_model("densenet121", 8, "none").eval()
    images = torch.randn(1, 3, 96, 96)
    target = torch.tensor([3])
    with GradCAM(model, cam_layer(model)) as cam:
        before, _ = cam(images, target)
    torch.manual_seed(1)
    randomised = build_model("densenet121", 8, "none").eval()
    with GradCAM(randomised, cam_layer(randomised)) as cam:
        after, _ = cam(images, target)
    correlation = np.corrcoef(before.flatten().numpy(), after.flatten().numpy())[0, 1]
    assert correlation < 0.9


def test_choose_samples_takes_right_and_wrong_per_class():
    predictions = pd.DataFrame(
        {
            "image": [f"I{i}" for i in range(7)],
            "label": ["NV", "NV", "NV", "MEL", "MEL", "DF", "DF"],
            "predicted": ["NV", "NV", "MEL", "MEL", "NV", "NV", "NV"],
        }
    )
    chosen = choose_samples(predictions, GradcamParams(correct_per_class=1, wrong_per_class=2, seed=0))
    summary = chosen.groupby(["label", "correct"]).size().to_dict()
    assert summary == {("DF", False): 2, ("MEL", False): 1, ("MEL", True): 1, ("NV", False): 1, ("NV", True): 1}
    assert chosen.equals(choose_samples(predictions, GradcamParams(correct_per_class=1, wrong_per_class=2, seed=0)))
