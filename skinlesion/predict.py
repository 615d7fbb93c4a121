"""Predict the class of new dermoscopy images with a trained model (`skinlesion predict`).

Images are decoded and preprocessed exactly as prepare-split and evaluate do (size, border
crop, colour constancy and normalisation come from the model file), in batches, on the
device training would pick. A file that cannot be read gets an error line naming it; the
others are still predicted; the exit status is 1 if any file failed.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import numpy as np
import torch

from skinlesion.data.images import decode_or_reason, load_image
from skinlesion.evaluation.gradcam import GradCAM, save_overlays
from skinlesion.model.architectures import cam_layer
from skinlesion.model.checkpoint import input_transform, load_checkpoint
from skinlesion.model.device import memory_format, select_device


def read_images(paths: list[Path], info: dict) -> tuple[list[np.ndarray | None], list[str]]:
    """Decoded (size, size, 3) uint8 images, None where a file failed, and the error messages."""
    decode = functools.partial(
        load_image,
        size=info["image_size"],
        crop_border=info.get("crop_border", False),
        color_constancy=info.get("color_constancy", False),
    )
    results = [decode_or_reason(functools.partial(open, path, "rb"), decode) for path in paths]
    return [pixels for pixels, _ in results], [reason for _, reason in results]


def predict_images(
    model: torch.nn.Module,
    info: dict,
    images: list[np.ndarray],
    *,
    device: torch.device,
    batch_size: int = 32,
    cam_dir: Path | None = None,
    names: list[str] | None = None,
) -> np.ndarray:
    """Class probabilities (N, C) of (H, W, 3) uint8 `images`, `batch_size` at a time on `device`
    (`model` must be there already); with `cam_dir`, also a Grad-CAM overlay per image there,
    named after `names`."""
    transform = input_transform(info)
    probabilities = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        batch = torch.stack([transform(torch.from_numpy(image).permute(2, 0, 1)) for image in chunk])
        batch = batch.to(device).contiguous(memory_format=memory_format(device))
        if cam_dir is None:
            with torch.no_grad():
                probabilities.append(torch.softmax(model(batch).float(), dim=1).cpu())
            continue
        with GradCAM(model, cam_layer(model)) as gradcam:
            cams, batch_probabilities = gradcam(batch)
        probabilities.append(batch_probabilities.cpu())
        for offset, (cam, row) in enumerate(zip(cams.cpu(), batch_probabilities.cpu())):
            predicted, name = info["classes"][int(row.argmax())], names[start + offset]
            title = f"{name}: {predicted} (p={row.max():.2f})"
            save_overlays(
                chunk[offset], {f"Grad-CAM: {predicted}": cam.numpy()}, title, cam_dir / f"{Path(name).stem}.png"
            )
    return torch.cat(probabilities).numpy() if probabilities else np.empty((0, len(info["classes"])))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", type=Path, nargs="+", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--model", type=Path, default=Path("models/model.pt"))
    parser.add_argument("--top", type=int, default=3, help="classes shown per image")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--cam", type=Path, help="folder for Grad-CAM overlays of the predicted class")
    parser.add_argument(
        "--device", default="auto", choices=["auto", "cuda", "mps", "cpu"], help="auto: CUDA, then MPS, then CPU"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass")


def run(args: argparse.Namespace) -> int:
    """Predict `args.images`; print a table or JSON; return the exit status."""
    device = select_device(args.device)
    model, info = load_checkpoint(args.model)
    model = model.to(device, memory_format=memory_format(device))
    images, errors = read_images(args.images, info)
    readable = [i for i, image in enumerate(images) if image is not None]
    if args.cam:
        args.cam.mkdir(parents=True, exist_ok=True)
    probabilities = predict_images(
        model,
        info,
        [images[i] for i in readable],
        device=device,
        batch_size=args.batch_size,
        cam_dir=args.cam,
        names=[str(args.images[i]) for i in readable],
    )
    results = [{"image": str(path), "error": error} for path, error in zip(args.images, errors)]
    for i, row in zip(readable, probabilities):
        order = np.argsort(-row)[: args.top]
        top = [{"class": info["classes"][k], "probability": round(float(row[k]), 4)} for k in order]
        results[i] = {"image": str(args.images[i]), "predictions": top}
    if args.json:
        print(json.dumps(results, indent=2))
    for result in results:
        if "error" in result:
            print(f"{result['image']}: error: {result['error']}", file=sys.stderr)
        elif not args.json:
            print(
                result["image"]
                + "  "
                + "  ".join(f"{p['class']} {p['probability']:.3f}" for p in result["predictions"])
            )
    return 1 if any("error" in result for result in results) else 0


if __name__ == "__main__":
    from skinlesion.cli import main

    main(["predict", *sys.argv[1:]])
