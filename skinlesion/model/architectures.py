"""The torchvision backbones, their pretrained weights and the new classifier head, or a head
that joins the image features with the image's metadata (MetadataFusion)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn

from skinlesion.errors import WeightsError

log = logging.getLogger(__name__)

# torchvision builder and ImageNet weights (the published recipe uses DenseNet121's V1)
ARCHITECTURES = {
    "densenet121": (torchvision.models.densenet121, torchvision.models.DenseNet121_Weights.IMAGENET1K_V1),
    "resnet50": (torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V1),
    "efficientnet_b0": (torchvision.models.efficientnet_b0, torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1),
}
# torchvision's densenet .pth files use old key names ("norm.1") that the module calls "norm1"
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def _imagenet_state_dict(name: str) -> dict[str, torch.Tensor]:
    weights = ARCHITECTURES[name][1]
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except OSError as error:  # URLError is an OSError: no network, no cached file
        file_name = Path(weights.url).name
        raise WeightsError(
            f"cannot get ImageNet weights for {name} ({error}). On a machine without network, "
            f"download {weights.url} elsewhere and either put {file_name} into "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'} or set model.weights to the file's path; "
            "or set model.weights: none to train from scratch."
        ) from error


def _file_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"model.weights: {path} is not a file (use imagenet, none or a path)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a pickle with code in it, or not a torch file at all
        raise WeightsError(f"{path}: not a loadable weights file ({error})") from error
    state = state.get("state_dict", state)
    return {_OLD_DENSENET_KEY.sub(r"\1\2", key): value for key, value in state.items()}


def replace_head(model: nn.Module, make_head: Callable[[int], nn.Module]) -> int:
    """Swap the backbone's ImageNet classifier for `make_head(its input features)`; returns
    that number of features (those the backbone pools from an image)."""
    if isinstance(model, torchvision.models.DenseNet):
        features = model.classifier.in_features
        model.classifier = make_head(features)
    elif isinstance(model, torchvision.models.ResNet):
        features = model.fc.in_features
        model.fc = make_head(features)
    elif isinstance(model, torchvision.models.EfficientNet):
        features = model.classifier[-1].in_features
        model.classifier[-1] = make_head(features)
    else:
        raise TypeError(f"no classifier head known for {type(model).__name__}")
    return features


class MetadataFusion(nn.Module):
    """A backbone's pooled image features joined with a small network's features of the
    image's metadata vector, then one Linear classifier over both: the scheme of the winning
    ISIC 2019 entry (Gessert et al., 2020), with a smaller metadata network.

    Called as `model(images, metadata)`: images (N, 3, H, W), metadata (N, metadata_features).
    """

    def __init__(self, backbone: nn.Module, metadata_features: int, num_classes: int, hidden: int = 128):
        super().__init__()
        # the backbone, its head an identity, returns its pooled image features
        image_features = replace_head(backbone, lambda _: nn.Identity())
        self.backbone = backbone
        self.metadata = nn.Sequential(
            nn.Linear(metadata_features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(image_features + hidden, num_classes)

    def forward(self, images: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.cat([self.backbone(images), self.metadata(metadata)], dim=1))


def build_model(name: str, num_classes: int, weights: str, metadata_features: int = 0) -> nn.Module:
    """An ImageNet-shaped torchvision model, optionally with pretrained weights, with a new head.

    `weights` is "imagenet" (torchvision's weights API), "none" (random init), or a path to
    a state dict in torchvision's format. Loading is strict: a file for another
    architecture fails with the mismatching keys named. With `metadata_features` > 0 the
    model is a MetadataFusion of that backbone, called as `model(images, metadata)`.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(ARCHITECTURES)}")
    model = ARCHITECTURES[name][0](weights=None)
    if weights != "none":
        state = _imagenet_state_dict(name) if weights == "imagenet" else _file_state_dict(Path(weights))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise WeightsError(f"model.weights {weights!r} does not fit {name}: {error}") from error
        log.info("loaded %s weights for %s", weights, name)
    if metadata_features:
        return MetadataFusion(model, metadata_features, num_classes)
    replace_head(model, lambda features: nn.Linear(features, num_classes))
    return model


def cam_layer(model: nn.Module) -> nn.Module:
    """The last convolutional feature block, which Grad-CAM explains."""
    if isinstance(model, MetadataFusion):
        return cam_layer(model.backbone)
    if isinstance(model, torchvision.models.DenseNet):
        return model.features.norm5
    if isinstance(model, torchvision.models.ResNet):
        return model.layer4
    if isinstance(model, torchvision.models.EfficientNet):
        return model.features[-1]
    raise TypeError(f"no Grad-CAM layer known for {type(model).__name__}")
