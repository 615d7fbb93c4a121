"""The train step alone, on batches already on the device, across precision and memory layout.

Shows which of the fast-path settings pay at which batch size (a GPU running DenseNet121 at
batch 32 can be bound by kernel launches rather than arithmetic). Prints a JSON report.

    python -m benchmarks.model_step --size 224 --batches 32 128
    python -m benchmarks.model_step --size 224 --batches 32 --compile reduce-overhead   # also compiled
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from benchmarks import publish
from benchmarks.timing import measure
from skinlesion.classes import CLASSES
from skinlesion.model.architectures import build_model
from skinlesion.model.device import autocast_dtype, compile_model, configure_backends, select_device
from skinlesion.training.epoch import train_step


def images_per_second(
    device: torch.device,
    size: int,
    batch: int,
    dtype: torch.dtype | None,
    layout: torch.memory_format,
    steps: int,
    warmup: int,
    compile_mode: str = "none",
) -> float:
    torch.manual_seed(0)
    net = build_model("densenet121", len(CLASSES), "none").to(device, memory_format=layout).train()
    model = compile_model(net, compile_mode)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(enabled=dtype == torch.float16)
    criterion = nn.CrossEntropyLoss()
    images = torch.randn(batch, 3, size, size, device=device)
    labels = torch.randint(0, len(CLASSES), (batch,), device=device)

    def step() -> None:
        train_step(model, criterion, optimizer, scaler, images, labels, device=device, dtype=dtype, layout=layout)

    return batch * steps / measure(step, warmup=warmup, number=steps, device=device).best_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--compile",
        nargs="*",
        default=[],
        choices=("default", "reduce-overhead", "max-autotune"),
        help="also time these torch.compile modes (fp32, channels_last on CUDA); the warmup steps include compiling",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = select_device("auto")
    configure_backends(device)
    mixed = autocast_dtype(device, "bf16")
    rows = []
    for batch in args.batches:
        for dtype in (None, mixed) if mixed else (None,):
            for layout in (torch.contiguous_format, torch.channels_last):
                rate = images_per_second(device, args.size, batch, dtype, layout, args.steps, args.warmup)
                rows.append(
                    {
                        "batch": batch,
                        "precision": str(dtype or torch.float32).removeprefix("torch."),
                        "layout": str(layout).removeprefix("torch."),
                        "images_per_s": round(rate, 1),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
        for mode in args.compile:
            layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
            rate = images_per_second(device, args.size, batch, None, layout, args.steps, args.warmup, mode)
            rows.append(
                {
                    "batch": batch,
                    "precision": "float32",
                    "layout": str(layout).removeprefix("torch."),
                    "compile": mode,
                    "images_per_s": round(rate, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    report = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "image_size": args.size,
        "rows": rows,
    }
    publish(report, args.out)


if __name__ == "__main__":
    main()
