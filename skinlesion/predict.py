"""Predict the class of new dermoscopy images with a trained model (`skinlesion predict`).

Images are decoded and preprocessed exactly as prepare-split and evaluate do (size, border
crop, colour constancy and normalisation come from the model file), in batches, on the
device training would pick, with the model file's temperature (when training fitted one) and
optional test-time augmentation (--tta). A model trained with `model.use_metadata` also takes
each image's age, sex and anatomical site: from `--metadata CSV` (the official metadata
format, rows matched by file name without extension) or `--age/--sex/--site` for every image;
what is not given is treated as missing, and a warning says so. A file that cannot be read
gets an error line naming it; the others are still predicted; the exit status is 1 if any
file failed.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd
import torch

from skinlesion.data.images import decode_or_reason, load_image
from skinlesion.data.metadata import FIELDS, check_metadata, encode_metadata
from skinlesion.errors import DataError
from skinlesion.evaluation.gradcam import GradCAM, save_overlays
from skinlesion.model.architectures import cam_layer
from skinlesion.model.checkpoint import input_transform, load_checkpoint, uses_metadata
from skinlesion.model.device import memory_format, select_device
from skinlesion.model.inference import TTA, log_probabilities

log = logging.getLogger(__name__)


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
    metadata: np.ndarray | None = None,
) -> np.ndarray:
    """Class probabilities (N, C) of one batch of (H, W, 3) uint8 `images` on `device` (where
    `model` is already), with the model file's temperature and `tta` as evaluate applies them;
    with `cam_dir`, also a Grad-CAM overlay of the predicted class per image there, named
    after `names`. `metadata` (N, F), encode_metadata's, for a model that fuses metadata."""
    transform = input_transform(info)
    batch = torch.stack([transform(torch.from_numpy(image).permute(2, 0, 1)) for image in images])
    batch = batch.to(device).contiguous(memory_format=memory_format(device))
    inputs = None if metadata is None else torch.from_numpy(metadata).to(device)
    with torch.no_grad():
        probabilities = log_probabilities(model, batch, tta, info.get("temperature", 1.0), inputs).exp().cpu()
    if cam_dir is None:
        return probabilities.numpy()
    with GradCAM(model, cam_layer(model)) as gradcam:
        cams, _ = gradcam(batch, probabilities.argmax(dim=1).to(device), inputs)
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
    metadata: pd.DataFrame | None = None,
) -> list[dict]:
    """Per path, its `top` classes with probabilities, or the error that kept it from being read.

    `metadata`: for a model that fuses metadata, one row per path (columns FIELDS, checked;
    empty where missing), also reported per image. Files are decoded `batch_size` at a time,
    so memory does not grow with the number of files."""
    results = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        images, errors = read_images(chunk, info)
        readable = [i for i, image in enumerate(images) if image is not None]
        names = [str(chunk[i]) for i in readable]
        kept = [images[i] for i in readable]
        given = None if metadata is None else metadata.iloc[start : start + batch_size].reset_index(drop=True)
        inputs = None if given is None else encode_metadata(given.iloc[readable], "metadata")
        batch = functools.partial(predict_batch, device=device, tta=tta, cam_dir=cam_dir, metadata=inputs)
        rows = iter(batch(model, info, kept, names) if kept else [])
        for index, (path, image, error) in enumerate(zip(chunk, images, errors)):
            if image is None:
                results.append({"image": str(path), "error": error})
                continue
            row = next(rows)
            order = np.argsort(-row)[:top]
            top_classes = [{"class": info["classes"][k], "probability": round(float(row[k]), 4)} for k in order]
            results.append({"image": str(path), "predictions": top_classes})
            if given is not None:
                results[-1]["metadata"] = given.iloc[index].to_dict()
    return results


def image_metadata(paths: list[Path], args: argparse.Namespace, info: dict) -> pd.DataFrame | None:
    """The metadata of each of `paths` for the model in `info`, checked, one row per path
    (empty where missing), from `--metadata CSV` or `--age/--sex/--site`; None when the model
    takes none. Warns about every image whose metadata is missing entirely."""
    options = {"age_approx": args.age, "sex": args.sex, "anatom_site_general": args.site}
    given = {field: value for field, value in options.items() if value is not None}
    if args.metadata and given:
        raise DataError("--metadata and --age/--sex/--site: give a metadata file or values for every image, not both")
    if not uses_metadata(info):
        if args.metadata or given:
            log.warning("%s: the model takes no metadata; --metadata/--age/--sex/--site are ignored", args.model)
        return None
    empty = dict.fromkeys(FIELDS, "")
    if given:
        values = check_metadata(pd.DataFrame([{**empty, **given}]), "--age/--sex/--site").iloc[0].to_dict()
        return pd.DataFrame([values] * len(paths))
    if not args.metadata:
        log.warning(
            "%s: the model takes age, sex and anatomical site, and none were given (--metadata CSV or "
            "--age/--sex/--site): all treated as missing, which lowers its accuracy",
            args.model,
        )
        return pd.DataFrame([empty] * len(paths))
    table = pd.read_csv(args.metadata, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    if "image" not in table.columns:
        raise DataError(f"{args.metadata}: no column 'image' (found {list(table.columns)})")
    table = check_metadata(table, str(args.metadata)).set_index(table["image"].str.strip())
    names = [path.stem for path in paths]
    absent = [name for name in names if name not in table.index]
    if absent:
        log.warning(
            "%s: no row for %d of the images (%s%s): their metadata is treated as missing",
            args.metadata,
            len(absent),
            ", ".join(absent[:3]),
            ", ..." if len(absent) > 3 else "",
        )
    return pd.DataFrame([table.loc[name].to_dict() if name in table.index else empty for name in names])


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
    parser.add_argument(
        "--metadata",
        type=Path,
        help="for a model trained with metadata: a CSV with columns image, age_approx, anatom_site_general, sex "
        "(as ISIC's metadata files), matched to the files by name without extension",
    )
    parser.add_argument("--age", help="approximate age in years of every image (instead of --metadata)")
    parser.add_argument("--sex", help="male or female, for every image")
    parser.add_argument("--site", help="anatomical site of every image, as ISIC writes it (e.g. 'head/neck')")


def run(args: argparse.Namespace) -> int:
    """Predict `args.images`; print a table or JSON; return the exit status."""
    device = select_device(args.device)
    model, info = load_checkpoint(args.model)
    model = model.to(device, memory_format=memory_format(device))
    metadata = image_metadata(args.images, args, info)
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
        metadata=metadata,
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
