"""The project's Grad-CAM against pytorch-grad-cam (the `grad-cam` package) on the same model and images.

Run in float64: with random weights the maps' range can be small, and both sides scale each
map to [0, 1], which amplifies float32 rounding.
"""

import numpy as np
import pytest
import torch

from skinlesion.evaluation.gradcam import GradCAM
from skinlesion.model.architectures import build_model, cam_layer

pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402


def _both(name: str):
    torch.manual_seed(0)
    model = build_model(name, 8, "none").eval().double()
    images = torch.randn(2, 3, 128, 128, dtype=torch.float64)
    targets = torch.tensor([2, 5])
    with GradCAM(model, cam_layer(model)) as cam:
        ours, _ = cam(images, targets)
        kept = cam._activations.detach(), cam._activations.grad.detach()
    library = pytorch_grad_cam.GradCAM(model=model, target_layers=[cam_layer(model)])
    theirs = library(input_tensor=images, targets=[ClassifierOutputTarget(int(k)) for k in targets])
    return model, targets, ours.numpy(), theirs, kept


def test_matches_the_library_on_resnet50():
    _, _, ours, theirs, _ = _both("resnet50")
    assert np.abs(ours - theirs).max() < 1e-2  # the library resizes in float32


def test_densenet_difference_is_the_in_place_relu_and_ours_follows_the_definition():
    """On DenseNet the library keeps the post-ReLU maps but, because the ReLU runs in place,
    receives the gradient before it (zero wherever a map is not positive). Grad-CAM's weights
    are the gradient with respect to the maps the classifier pools: for a global-average-pool
    and linear head that is exactly W[class] / (h * w) everywhere, which is what ours uses."""
    model, targets, ours, theirs, (maps, gradients) = _both("densenet121")
    h, w = maps.shape[-2:]
    head = model.classifier.weight.detach()
    assert torch.allclose(gradients, (head[targets] / (h * w))[:, :, None, None].expand_as(gradients))
    # the library's result is reproduced exactly by pairing the maps with the masked gradient
    masked = gradients * (maps > 0)
    library_way = torch.relu((masked.mean(dim=(2, 3), keepdim=True) * maps).sum(dim=1)).numpy()
    assert np.abs(scale_cam_image(scale_cam_image(library_way, (128, 128))) - theirs).max() < 1e-6
    assert np.abs(ours - theirs).max() > 0.1  # and the two definitions do differ here
