"""Predict the class of new dermoscopy images with a trained model.

    python -m stages.predict IMAGE [IMAGE ...] [--model models/model.pt] [--top 3] [--json] [--cam DIR]

Images are decoded and preprocessed exactly as prepare-split and evaluate do (size, border
crop, colour constancy and normalisation come from the model file). A file that cannot be
read gets an error line naming it; the others are still predicted; the exit status is 1
if any file failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stages.cam import GradCAM, save_overlays
from stages.isic import load_image
from stages.model import cam_layer, load_checkpoint
from stages.transforms import eval_transform

BATCH = 32


def read_images(paths: list[Path], info: dict) -> tuple[list[np.ndarray | None], list[str]]:
    """Decoded (size, size, 3) uint8 images, None where a file failed, and the error messages."""
    images, errors = [], []
    for path in paths:
        try:
            images.append(load_image(path, info["image_size"], crop_border=info.get("crop_border", False), color_constancy=info.get("color_constancy", False)))
            errors.append("")
        except FileNotFoundError:
            images.append(None)
            errors.append("file not found")
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            images.append(None)
            errors.append(f"cannot decode: {error}")
    return images, errors


def predict_images(model: torch.nn.Module, info: dict, images: list[np.ndarray], cam_dir: Path | None, names: list[str]) -> np.ndarray:
    """Class probabilities (N, C); with `cam_dir`, also a Grad-CAM overlay per image there."""
    transform = eval_transform(mean=tuple(info["mean"]), std=tuple(info["std"]))
    probabilities = []
    for start in range(0, len(images), BATCH):
        batch = torch.stack([transform(torch.from_numpy(image).permute(2, 0, 1)) for image in images[start : start + BATCH]])
        if cam_dir is None:
            with torch.no_grad():
                probabilities.append(torch.softmax(model(batch), dim=1))
            continue
        with GradCAM(model, cam_layer(model)) as gradcam:
            cams, batch_probabilities = gradcam(batch)
        probabilities.append(batch_probabilities)
        for offset, (cam, row) in enumerate(zip(cams, batch_probabilities)):
            predicted = info["classes"][int(row.argmax())]
            name = names[start + offset]
            save_overlays(images[start + offset], {f"Grad-CAM: {predicted}": cam.numpy()}, f"{name}: {predicted} (p={row.max():.2f})", cam_dir / f"{Path(name).stem}.png")
    return torch.cat(probabilities).numpy() if probabilities else np.empty((0, len(info["classes"])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path, nargs="+", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--model", type=Path, default=Path("models/model.pt"))
    parser.add_argument("--top", type=int, default=3, help="classes shown per image")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--cam", type=Path, help="folder for Grad-CAM overlays of the predicted class")
    args = parser.parse_args()

    model, info = load_checkpoint(args.model)
    images, errors = read_images(args.images, info)
    readable = [i for i, image in enumerate(images) if image is not None]
    if args.cam:
        args.cam.mkdir(parents=True, exist_ok=True)
    probabilities = predict_images(model, info, [images[i] for i in readable], args.cam, [str(args.images[i]) for i in readable])
    results = [{"image": str(path), "error": error} for path, error in zip(args.images, errors)]
    for i, row in zip(readable, probabilities):
        order = np.argsort(-row)[: args.top]
        results[i] = {"image": str(args.images[i]), "predictions": [{"class": info["classes"][k], "probability": round(float(row[k]), 4)} for k in order]}

    if args.json:
        print(json.dumps(results, indent=2))
    for result in results:
        if "error" in result:
            print(f"{result['image']}: error: {result['error']}", file=sys.stderr)
        elif not args.json:
            print(result["image"] + "  " + "  ".join(f"{p['class']} {p['probability']:.3f}" for p in result["predictions"]))
    sys.exit(1 if any("error" in result for result in results) else 0)


if __name__ == "__main__":
    main()
