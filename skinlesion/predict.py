"""Predict the class of new dermoscopy images with a trained model (`skinlesion predict`).

Images are decoded and preprocessed exactly as prepare-split and evaluate do (size, border
crop, colour constancy and normalisation come from the model file), in batches, on the
device training would pick, with the model file's temperature (when training fitted one) and
optional test-time augmentation (--tta). A model trained with `model.use_metadata` also takes
each image's age, sex and anatomical site: from `--metadata CSV` (the official metadata
format, rows matched by file name without extension) or `--age/--sex/--site` for every image;
what is not given is treated as missing, and a warning says so. Inputs are image files,
folders of them, or zip archives of them read in place (the official test zip); with
--isic-submission, the ISIC 2019 submission CSV is written too. A file that cannot be read
gets an error line naming it; the others are still predicted; the exit status is 1 if any
file failed.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import logging
import sys
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO, get_args

import numpy as np
import pandas as pd
import torch

from skinlesion.atomic import atomic_file
from skinlesion.classes import CLASSES
from skinlesion.data.images import decode_or_reason, load_image
from skinlesion.data.metadata import FIELDS, check_metadata, encode_metadata
from skinlesion.errors import DataError
from skinlesion.evaluation.gradcam import class_maps, maps_note, save_overlays
from skinlesion.model.checkpoint import input_transform, load_for_inference
from skinlesion.model.device import memory_format, select_device
from skinlesion.model.inference import TTA, log_probabilities
from skinlesion.model.info import ModelInfo

log = logging.getLogger(__name__)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


class ZipMember:
    """An image inside a zip archive (the official `ISIC_2019_Test_Input.zip`, say), read in
    place; named `archive:member` in messages, its stem is the member's file name's."""

    def __init__(self, archive: Path, member: str):
        self.archive, self.member = archive, member
        self.stem = PurePosixPath(member).stem

    def __str__(self) -> str:
        return f"{self.archive}:{self.member}"

    def open(self) -> BinaryIO:
        return io.BytesIO(_zip(self.archive).read(self.member))


@functools.cache
def _zip(archive: Path) -> zipfile.ZipFile:
    return zipfile.ZipFile(archive)


def expand_inputs(paths: list[Path]) -> list[Path | ZipMember]:
    """The images to predict: a file as given, then the images of a folder and of a zip archive
    (by suffix, sorted by name)."""
    images: list[Path | ZipMember] = []
    for path in paths:
        if path.is_dir():
            images += sorted(item for item in path.iterdir() if item.suffix.lower() in IMAGE_SUFFIXES)
        elif path.suffix.lower() == ".zip" and path.is_file():
            try:
                names = _zip(path).namelist()
            except zipfile.BadZipFile as error:
                raise DataError(f"{path}: not a readable zip file ({error})") from None
            members = sorted(name for name in names if PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES)
            images += [ZipMember(path, name) for name in members]
        else:
            images.append(path)
    return images


def read_images(paths: list[Path | ZipMember], info: ModelInfo) -> tuple[list[np.ndarray | None], list[str]]:
    """Decoded (size, size, 3) uint8 images, None where a file failed, and the error messages."""
    decode = functools.partial(
        load_image,
        size=info.image_size,
        crop_border=info.crop_border,
        color_constancy=info.color_constancy,
    )
    openers = [path.open if isinstance(path, ZipMember) else functools.partial(open, path, "rb") for path in paths]
    results = [decode_or_reason(opener, decode) for opener in openers]
    return [pixels for pixels, _ in results], [reason for _, reason in results]


def predict_batch(
    model: torch.nn.Module,
    info: ModelInfo,
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
        probabilities = log_probabilities(model, batch, tta, info.temperature, inputs).exp().cpu()
    if cam_dir is None:
        return probabilities.numpy()
    cams = class_maps(model, batch, probabilities.argmax(dim=1).to(device), inputs)
    note = maps_note(model).removeprefix(", ")
    for image, cam, row, name in zip(images, cams.cpu(), probabilities, names):
        predicted = info.classes[int(row.argmax())]
        title = f"{name}: {predicted} (p={row.max():.2f})"
        label = f"Grad-CAM: {predicted}" + (f" ({note})" if note else "")
        save_overlays(image, {label: cam.numpy()}, title, cam_dir / f"{Path(name).stem}.png")
    return probabilities.numpy()


def predict_files(
    model: torch.nn.Module,
    info: ModelInfo,
    paths: list[Path | ZipMember],
    *,
    device: torch.device,
    batch_size: int = 32,
    top: int = 3,
    tta: TTA = "none",
    cam_dir: Path | None = None,
    metadata: pd.DataFrame | None = None,
) -> list[dict]:
    """Per path, its `top` classes with probabilities and every class's probability (an array,
    `probabilities`), or the error that kept it from being read.

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
            top_classes = [{"class": info.classes[k], "probability": round(float(row[k]), 4)} for k in order]
            results.append({"image": str(path), "predictions": top_classes, "probabilities": row})
            if given is not None:
                results[-1]["metadata"] = given.iloc[index].to_dict()
    return results


def check_submission(info: ModelInfo) -> None:
    """Raise DataError unless the model in `info` can write a submission (run before predicting)."""
    if info.unknown_threshold is None:
        raise DataError("the model file has no unknown threshold (it predates it): retrain it to write a submission")
    if sorted(info.classes) != sorted(CLASSES):
        raise DataError(f"a submission needs the classes {list(CLASSES)}; the model predicts {list(info.classes)}")


def write_submission(path: Path, results: list[dict], info: ModelInfo) -> int:
    """The ISIC 2019 submission CSV of predict_files' `results` (one row per image read, named
    after its file without extension; header GROUND_TRUTH_COLUMNS: image, MEL, ..., SCC, UNK).
    Class columns are the model's probabilities. UNK is min(1, t^2 / m), with m the top class
    probability and t = 1 - the model's unknown threshold: it is the row's largest value
    exactly when the unknown score calls the image unknown, and it ranks images as the score
    does. Returns the number of rows."""
    check_submission(info)
    read = [result for result in results if "probabilities" in result]
    probabilities = np.array([result["probabilities"] for result in read]).reshape(len(read), len(CLASSES))
    table = pd.DataFrame(probabilities, columns=list(info.classes))[list(CLASSES)]
    known = 1.0 - info.unknown_threshold
    table["UNK"] = np.minimum(1.0, known**2 / probabilities.max(axis=1))
    table.insert(0, "image", [Path(result["image"]).stem for result in read])
    with atomic_file(path) as tmp:
        table.round(6).to_csv(tmp, index=False, lineterminator="\n")
    return len(table)


def image_metadata(paths: list[Path | ZipMember], args: argparse.Namespace, info: ModelInfo) -> pd.DataFrame | None:
    """The metadata of each of `paths` for the model in `info`, checked, one row per path
    (empty where missing), from `--metadata CSV` or `--age/--sex/--site`; None when the model
    takes none. Warns about every image whose metadata is missing entirely."""
    options = {"age_approx": args.age, "sex": args.sex, "anatom_site_general": args.site}
    given = {field: value for field, value in options.items() if value is not None}
    if args.metadata and given:
        raise DataError("--metadata and --age/--sex/--site: give a metadata file or values for every image, not both")
    if not info.uses_metadata:
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
    parser.add_argument(
        "images", type=Path, nargs="+", help="image files (JPEG, PNG, ...), folders of them, or zip archives of them"
    )
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
    parser.add_argument(
        "--isic-submission",
        type=Path,
        help="also write the ISIC 2019 submission CSV (image, MEL, ..., SCC, UNK; UNK from the unknown score)",
    )
    parser.add_argument("--age", help="approximate age in years of every image (instead of --metadata)")
    parser.add_argument("--sex", help="male or female, for every image")
    parser.add_argument("--site", help="anatomical site of every image, as ISIC writes it (e.g. 'head/neck')")


def run(args: argparse.Namespace) -> int:
    """Predict `args.images`; print a table or JSON; return the exit status."""
    device = select_device(args.device, "--device")
    model, info = load_for_inference(args.model, device)
    if args.isic_submission:
        check_submission(info)
    images = expand_inputs(args.images)
    metadata = image_metadata(images, args, info)
    if args.cam:
        args.cam.mkdir(parents=True, exist_ok=True)
    results = predict_files(
        model,
        info,
        images,
        device=device,
        batch_size=args.batch_size,
        top=args.top,
        tta=args.tta,
        cam_dir=args.cam,
        metadata=metadata,
    )
    if args.isic_submission:
        rows = write_submission(args.isic_submission, results, info)
        log.info("wrote %d rows to %s", rows, args.isic_submission)
    for result in results:
        result.pop("probabilities", None)
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
