"""Where the model runs and how: device choice, mixed precision, memory layout, compilation."""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import nn

from skinlesion.config import View

log = logging.getLogger(__name__)

Device = Literal["auto", "cuda", "mps", "cpu"]


class TrainingDevice(View):
    """The key of `training` that the stages after train read: they predict where training ran."""

    device: Device


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
