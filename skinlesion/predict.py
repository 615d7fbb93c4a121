"""Predict the class of new dermoscopy images with a trained model (`skinlesion predict`).

Images are decoded and preprocessed exactly as prepare-split and evaluate do (size, border
crop, colour constancy and normalisation come from the model file), in batches, on the
device training would pick, with the model file's temperature (when training fitted one) and
optional test-time augmentation (--tta). A file that cannot be read gets an error line naming
it; the others are still predicted; the exit status is 1 if any file failed.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import get_args

import numpy as np
import torch

from skinlesion.data.images import decode_or_reason, load_image
from skinlesion.evaluation.gradcam import GradCAM, save_overlays
from skinlesion.model.architectures import cam_layer
from skinlesion.model.checkpoint import input_transform, load_checkpoint
from skinlesion.model.device import memory_format, select_device
from skinlesion.model.inference import TTA, log_probabilities


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


def predict_batch(
    model: torch.nn.Module,
    info: dict,
    images: list[np.ndarray],
    names: list[str],
    *,
    device: torch.device,
    tta: TTA = "none",
    cam_dir: Path | None = None,
) -> np.ndarray:
    """Class probabilities (N, C) of one batch of (H, W, 3) uint8 `images` on `device` (where
    `model` is already), with the model file's temperature and `tta` as evaluate applies them;
    with `cam_dir`, also a Grad-CAM overlay of the predicted class per image there, named
    after `names`."""
    transform = input_transform(info)
    batch = torch.stack([transform(torch.from_numpy(image).permute(2, 0, 1)) for image in images])
    batch = batch.to(device).contiguous(memory_format=memory_format(device))
    with torch.no_grad():
        probabilities = log_probabilities(model, batch, tta, info.get("temperature", 1.0)).exp().cpu()
    if cam_dir is None:
        return probabilities.numpy()
    with GradCAM(model, cam_layer(model)) as gradcam:
        cams, _ = gradcam(batch, probabilities.argmax(dim=1).to(device))
    for image, cam, row, name in zip(images, cams.cpu(), probabilities, names):
        predicted = info["classes"][int(row.argmax())]
        title = f"{name}: {predicted} (p={row.max():.2f})"
        save_overlays(image, {f"Grad-CAM: {predicted}": cam.numpy()}, title, cam_dir / f"{Path(name).stem}.png")
    return probabilities.numpy()


def predict_files(
    model: torch.nn.Module,
    info: dict,
    paths: list[Path],
    *,
    device: torch.device,
    batch_size: int = 32,
    top: int = 3,
    tta: TTA = "none",
    cam_dir: Path | None = None,
) -> list[dict]:
    """Per path, its `top` classes with probabilities, or the error that kept it from being read.

    Files are decoded `batch_size` at a time, so memory does not grow with the number of files."""
    results = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        images, errors = read_images(chunk, info)
        readable = [i for i, image in enumerate(images) if image is not None]
        names = [str(chunk[i]) for i in readable]
        kept = [images[i] for i in readable]
        rows = iter(predict_batch(model, info, kept, names, device=device, tta=tta, cam_dir=cam_dir) if kept else [])
        for path, image, error in zip(chunk, images, errors):
            if image is None:
                results.append({"image": str(path), "error": error})
                continue
            row = next(rows)
            order = np.argsort(-row)[:top]
            top_classes = [{"class": info["classes"][k], "probability": round(float(row[k]), 4)} for k in order]
            results.append({"image": str(path), "predictions": top_classes})
    return results


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
    parser.add_argument(
        "--tta", default="none", choices=list(get_args(TTA)), help="test-time augmentation, as evaluate.tta"
    )


def run(args: argparse.Namespace) -> int:
    """Predict `args.images`; print a table or JSON; return the exit status."""
    device = select_device(args.device)
    model, info = load_checkpoint(args.model)
    model = model.to(device, memory_format=memory_format(device))
    if args.cam:
        args.cam.mkdir(parents=True, exist_ok=True)
    results = predict_files(
        model,
        info,
        args.images,
        device=device,
        batch_size=args.batch_size,
        top=args.top,
        tta=args.tta,
        cam_dir=args.cam,
    )
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
