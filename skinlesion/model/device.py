"""Where the model runs and how: device choice, mixed precision, memory layout, compilation."""

from __future__ import annotations

import logging

import torch
from torch import nn

from skinlesion.errors import DeviceError

log = logging.getLogger(__name__)


def available_devices() -> list[str]:
    """The device types this machine has, best first."""
    found = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    return [name for name, there in found.items() if there]


def select_device(name: str, key: str = "training.device") -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then CPU; a named device must be available (a
    DeviceError names `key`, the setting that asked for it, and what there is)."""
    available = available_devices()
    if name == "auto":
        return torch.device(available[0])
    if name not in available:
        raise DeviceError(f"{key} is {name}, but this machine has no {name.upper()} device (available: {available})")
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


def on_device(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` moved to `device`, in the memory format that runs fastest there."""
    return model.to(device, memory_format=memory_format(device))


def compile_model(model: nn.Module, mode: str) -> nn.Module:
    """`model` wrapped by torch.compile in `mode` ("reduce-overhead" adds CUDA graphs); unchanged for "none".

    The wrapper shares the parameters of `model`, which is what is saved.
    """
    if mode == "none":
        return model
    return torch.compile(model, mode=mode)
