"""The backbones (torchvision's, and timm's for what torchvision lacks), their input
normalisation, the new classifier head, or a head that joins the image features with the
image's metadata (MetadataFusion), and the layer Grad-CAM explains.

Pretrained weights come from skinlesion.model.weights."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator

import torch
import torchvision
from torch import nn

from skinlesion.errors import WeightsError
from skinlesion.model.names import TIMM_PREFIX, Architecture
from skinlesion.model.weights import pretrained_state, timm_module, weights_source

log = logging.getLogger(__name__)

_TV = torchvision.models
# torchvision builder and ImageNet weights (the published recipe uses DenseNet121's V1)
TORCHVISION = {
    "densenet121": (_TV.densenet121, _TV.DenseNet121_Weights.IMAGENET1K_V1),
    "resnet50": (_TV.resnet50, _TV.ResNet50_Weights.IMAGENET1K_V1),
    **{
        f"efficientnet_b{size}": (
            getattr(_TV, f"efficientnet_b{size}"),
            getattr(_TV, f"EfficientNet_B{size}_Weights").IMAGENET1K_V1,
        )
        for size in range(8)
    },
    "convnext_tiny": (_TV.convnext_tiny, _TV.ConvNeXt_Tiny_Weights.IMAGENET1K_V1),
}
# timm's models, named timm/NAME in params (its pretrained config gives the normalisation)
TIMM = ("tf_efficientnet_lite0",)
ARCHITECTURES: tuple[Architecture, ...] = (*TORCHVISION, *(TIMM_PREFIX + name for name in TIMM))


def _known(name: str) -> None:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of {list(ARCHITECTURES)}")


def imagenet_backbone(name: str) -> nn.Module:
    """The backbone `name` with its 1000-class ImageNet head, randomly initialised."""
    _known(name)
    if name in TORCHVISION:
        return TORCHVISION[name][0](weights=None)
    return timm_module().create_model(name.removeprefix(TIMM_PREFIX), pretrained=False)


def _library_weights(name: str):
    return TORCHVISION[name][1] if name in TORCHVISION else None


def describe_weights(name: str, weights: str) -> str:
    """Where `model.weights` for backbone `name` come from, in one line (weights.weights_source)."""
    _known(name)
    return weights_source(name, weights, _library_weights(name))


@functools.cache
def normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel of [0, 1] pixels, from the backbone's pretrained config: what its
    ImageNet weights were trained with (ImageNet's statistics for torchvision's; 0.5 and 0.5
    for TensorFlow ports such as tf_efficientnet_lite0)."""
    _known(name)
    if name in TORCHVISION:
        preset = TORCHVISION[name][1].transforms()
        return tuple(preset.mean), tuple(preset.std)
    config = timm_module().get_pretrained_cfg(name.removeprefix(TIMM_PREFIX))
    return tuple(config.mean), tuple(config.std)


def _timm_head_name(model: nn.Module) -> str:
    return model.pretrained_cfg["classifier"]  # e.g. "classifier", or "head.fc"


def replace_head(model: nn.Module, make_head: Callable[[int], nn.Module]) -> int:
    """Swap the backbone's ImageNet classifier for `make_head(its input features)`; returns
    that number of features (those the backbone pools from an image)."""
    if isinstance(model, _TV.DenseNet):
        features = model.classifier.in_features
        model.classifier = make_head(features)
    elif isinstance(model, _TV.ResNet):
        features = model.fc.in_features
        model.fc = make_head(features)
    elif isinstance(model, (_TV.EfficientNet, _TV.ConvNeXt)):
        features = model.classifier[-1].in_features
        model.classifier[-1] = make_head(features)
    elif hasattr(model, "pretrained_cfg"):  # a timm model
        features = model.num_features
        parent, _, attribute = _timm_head_name(model).rpartition(".")
        setattr(model.get_submodule(parent), attribute, make_head(features))
    else:
        raise TypeError(f"no classifier head known for {type(model).__name__}")
    return features


def head(model: nn.Module) -> nn.Module:
    """The part of `model` that is new (not pretrained): the classifier, or MetadataFusion's
    metadata network and classifier."""
    if isinstance(model, MetadataFusion):
        return nn.ModuleList([model.metadata, model.classifier])
    if isinstance(model, _TV.DenseNet):
        return model.classifier
    if isinstance(model, _TV.ResNet):
        return model.fc
    if isinstance(model, (_TV.EfficientNet, _TV.ConvNeXt)):
        return model.classifier[-1]
    if hasattr(model, "pretrained_cfg"):
        return model.get_submodule(_timm_head_name(model))
    raise TypeError(f"no classifier head known for {type(model).__name__}")


def backbone_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """The pretrained part's parameters: all of `model`'s but its head's."""
    new = {id(parameter) for parameter in head(model).parameters()}
    return (parameter for parameter in model.parameters() if id(parameter) not in new)


def freeze_backbone_statistics(model: nn.Module) -> None:
    """Put the backbone's normalisation layers in eval mode (after `model.train()`), so that a
    frozen backbone keeps the running statistics it was pretrained with."""
    new = set(head(model).modules())
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase) and module not in new:
            module.eval()


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
    """A backbone, optionally with pretrained weights, with a new head.

    `weights` is "imagenet" (through the backbone's library), "packaged" (ImageNet weights a
    registry package ships, for the backbones in weights.PACKAGED), "none" (random init), or
    a path to a state dict (skinlesion.model.weights). Loading is strict: weights for another
    architecture fail with the mismatching tensors named. With `metadata_features` > 0 the
    model is a MetadataFusion of that backbone, called as `model(images, metadata)`.
    """
    model = imagenet_backbone(name)
    if weights != "none":
        state = pretrained_state(name, weights, model.state_dict(), _library_weights(name))
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
    if isinstance(model, _TV.DenseNet):
        return model.features.norm5
    if isinstance(model, _TV.ResNet):
        return model.layer4
    if isinstance(model, (_TV.EfficientNet, _TV.ConvNeXt)):
        return model.features[-1]
    if hasattr(model, "feature_info"):  # a timm model: its last feature stage
        return model.get_submodule(model.feature_info[-1]["module"])
    raise TypeError(f"no Grad-CAM layer known for {type(model).__name__}")
