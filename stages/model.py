"""Model construction, pretrained weights, checkpoints and batched inference."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader

from stages.files import atomic_file

log = logging.getLogger(__name__)

# torchvision builder and ImageNet weights (the published recipe uses DenseNet121's V1)
ARCHITECTURES = {
    "densenet121": (torchvision.models.densenet121, torchvision.models.DenseNet121_Weights.IMAGENET1K_V1),
    "resnet50": (torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V1),
    "efficientnet_b0": (torchvision.models.efficientnet_b0, torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1),
}
# torchvision's densenet .pth files use old key names ("norm.1") that the module calls "norm1"
_OLD_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


class WeightsError(RuntimeError):
    """Pretrained weights could not be had or do not fit the architecture."""


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


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Swap the ImageNet classifier for a fresh Linear layer with `num_classes` outputs."""
    if isinstance(model, torchvision.models.DenseNet):
        model.classifier = nn.Linear(model.classifier.in_features, num_classes)
    elif isinstance(model, torchvision.models.ResNet):
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    elif isinstance(model, torchvision.models.EfficientNet):
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    else:
        raise TypeError(f"no classifier head known for {type(model).__name__}")
    return model


def build_model(name: str, num_classes: int, weights: str) -> nn.Module:
    """An ImageNet-shaped torchvision model, optionally with pretrained weights, with a new head.

    `weights` is "imagenet" (torchvision's weights API), "none" (random init), or a path to
    a state dict in torchvision's format. Loading is strict: a file for another
    architecture fails with the mismatching keys named.
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
    return replace_head(model, num_classes)


def cam_layer(model: nn.Module) -> nn.Module:
    """The last convolutional feature block, which Grad-CAM explains."""
    if isinstance(model, torchvision.models.DenseNet):
        return model.features.norm5
    if isinstance(model, torchvision.models.ResNet):
        return model.layer4
    if isinstance(model, torchvision.models.EfficientNet):
        return model.features[-1]
    raise TypeError(f"no Grad-CAM layer known for {type(model).__name__}")


def save_checkpoint(path: str | Path, model: nn.Module, **info) -> None:
    """Save weights and what inference needs (arch, classes, image_size, mean, std, ...)."""
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    with atomic_file(path) as tmp:
        torch.save({"state_dict": state, **info}, tmp)


def load_checkpoint(path: str | Path, classes: tuple[str, ...] | None = None) -> tuple[nn.Module, dict]:
    """Rebuild the model saved by `save_checkpoint`; returns (model in eval mode, info).

    With `classes`, the model must predict exactly those classes in that order (evaluate
    and gradcam score it against labels in the project's order).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"{path}: not a loadable model file ({error})") from error
    if not isinstance(checkpoint, dict):
        raise WeightsError(f"{path}: not a model of this project (holds a {type(checkpoint).__name__})")
    missing = [key for key in ("state_dict", "arch", "classes", "image_size", "mean", "std") if key not in checkpoint]
    if missing:
        raise WeightsError(f"{path}: not a model of this project (missing {missing})")
    if checkpoint["arch"] not in ARCHITECTURES:
        raise WeightsError(f"{path}: unknown architecture {checkpoint['arch']!r}; known: {sorted(ARCHITECTURES)}")
    if classes is not None and tuple(checkpoint["classes"]) != tuple(classes):
        raise WeightsError(f"{path}: the model predicts {list(checkpoint['classes'])}, not {list(classes)} in that order")
    model = build_model(checkpoint["arch"], len(checkpoint["classes"]), "none")
    try:
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except (RuntimeError, TypeError, AttributeError) as error:  # other keys or shapes; not a state dict at all
        raise WeightsError(f"{path}: weights do not fit {checkpoint['arch']} with {len(checkpoint['classes'])} classes: {error}") from error
    info = {key: value for key, value in checkpoint.items() if key != "state_dict"}
    return model.eval(), info


def select_device(name: str) -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then CPU; a named device must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is cuda but no CUDA device is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("training.device is mps but Apple MPS is not available")
    return torch.device(name)


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for `precision` ("fp32", "bf16", "fp16") on `device`; None for none.

    Mixed precision applies on CUDA only; bf16 falls back to fp16 on GPUs without it.
    """
    if precision == "fp32" or device.type != "cuda":
        if precision != "fp32":
            log.warning("training.precision %s applies on CUDA only; running fp32 on %s", precision, device)
        return None
    if precision == "bf16" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def configure_backends(device: torch.device) -> None:
    """On CUDA: TF32 tensor cores for fp32 convolutions and matmuls; cuDNN picks the fastest kernels
    for the fixed input size."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def memory_format(device: torch.device) -> torch.memory_format:
    """channels_last on CUDA, where convolutions run faster in it; the default elsewhere."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[np.ndarray, np.ndarray, float]:
    """Class probabilities (N, C), true class indices (N,) and mean cross-entropy over `loader`.

    Always in full precision: validation and test scores do not depend on training.precision.
    """
    model.eval()
    probabilities, targets, losses = [], [], []
    for images, labels in loader:  # everything stays on the device until the end: no waiting per batch
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format(device))
        logits = model(images).float()
        losses.append(nn.functional.cross_entropy(logits, labels.to(device, non_blocking=True), reduction="sum"))
        probabilities.append(torch.softmax(logits, dim=1))
        targets.append(labels)
    y_true = torch.cat(targets).numpy()
    loss_sum = sum(torch.stack(losses).tolist())  # batch by batch, in double, as before
    return torch.cat(probabilities).cpu().numpy(), y_true, loss_sum / max(1, len(y_true))


def compile_model(model: nn.Module, mode: str) -> nn.Module:
    """`model` wrapped by torch.compile in `mode` ("reduce-overhead" adds CUDA graphs); unchanged for "none".

    The wrapper shares the parameters of `model`, which is what is saved.
    """
    if mode == "none":
        return model
    return torch.compile(model, mode=mode)
