"""An exported model (what `skinlesion export` writes) as predict's Classifier, through ONNX
Runtime, with no torch import on this path; and the file's contract with the exporter
(skinlesion.export.onnx_graph), which writes what this module reads.

The graph takes `images`, float32 (N, 3, S, S) normalised as the model was trained (pixels / 255,
then (x - mean) / std per channel), and for a model that fuses metadata also `metadata`,
float32 (N, F) as skinlesion.data.metadata encodes it; it returns `probabilities` (N, C) with
the model's temperature applied, averaged over the fold models of an ensemble. What the model
is (its ModelInfo) travels in the file's metadata, under INFO_KEY.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np

from skinlesion.errors import DataError, DeviceError, MissingExtraError
from skinlesion.model.info import TTA, ModelInfo

# the file's metadata entry that holds the model's ModelInfo as JSON (the ensemble's members too)
INFO_KEY = "skinlesion.model_info"
INPUTS, OUTPUT = ("images", "metadata"), "probabilities"


def import_onnxruntime(purpose: str) -> ModuleType:
    """The onnxruntime module, or a MissingExtraError that names the extra to install."""
    try:
        import onnxruntime
    except ImportError as error:
        raise MissingExtraError(
            f"{purpose} needs ONNX Runtime, which is not installed ({error}): install the optional extra, "
            'pip install -e ".[onnx]" in the checkout'
        ) from None
    return onnxruntime


def stored_info(info: ModelInfo) -> str:
    """`info` as INFO_KEY's JSON: what the model file stores, with the members of an ensemble."""
    return json.dumps({**info.stored(), "members": [member.stored() for member in info.members]})


def tta_views(images: np.ndarray, tta: TTA) -> list[np.ndarray]:
    """skinlesion.model.inference.tta_views in NumPy, view for view in the same order."""
    if tta == "none":
        return [images]
    mirrored = images[..., ::-1]
    if tta == "flips":
        return [images, mirrored]
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"TTA dihedral needs square images, got {tuple(images.shape[-2:])}")
    return [np.rot90(view, k, axes=(-2, -1)) for view in (images, mirrored) for k in range(4)]


def _providers(onnxruntime: ModuleType, device: str) -> list[str]:
    """ONNX Runtime's execution providers for `device` (auto: CUDA where it has it)."""
    available = onnxruntime.get_available_providers()
    if device == "cpu" or (device == "auto" and "CUDAExecutionProvider" not in available):
        return ["CPUExecutionProvider"]
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise DeviceError(f"device is {device}, but ONNX Runtime here runs on {available} only")


class OnnxClassifier:
    """The exported model in `path` through ONNX Runtime on `device` (auto, cuda or cpu; a
    DeviceError names the parameter `device`), predicting as the model file does (its
    temperature in the graph, `tta` views averaged in probability space)."""

    def __init__(self, path: Path, *, device: str = "auto", tta: TTA = "none"):
        onnxruntime = import_onnxruntime(f"{path}: an exported model")
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: model file not found")
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=_providers(onnxruntime, device))
        except DeviceError:
            raise
        except Exception as error:  # onnxruntime's own errors: not an ONNX file, a broken graph
            raise DataError(f"{path}: not a loadable ONNX model ({error})") from None
        if device == "cuda" and "CUDAExecutionProvider" not in self.session.get_providers():
            raise DeviceError(f"device is cuda, but ONNX Runtime could not start its CUDA provider for {path}")
        stored = self.session.get_modelmeta().custom_metadata_map.get(INFO_KEY)
        if stored is None:
            raise DataError(f"{path}: an ONNX model, but not one that skinlesion export wrote (no {INFO_KEY})")
        self.info = ModelInfo.from_stored(json.loads(stored), path)
        self.tta = tta
        self.mean = np.asarray(self.info.mean, dtype=np.float32)[:, None, None]
        self.std = np.asarray(self.info.std, dtype=np.float32)[:, None, None]

    def __call__(self, images: list[np.ndarray], names: list[str], metadata: np.ndarray | None) -> np.ndarray:
        """skinlesion.predict.run.Classifier's call."""
        batch = np.stack(images).transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1 / 255)  # as ToDtype
        return self.probabilities((batch - self.mean) / self.std, metadata)

    def probabilities(self, batch: np.ndarray, metadata: np.ndarray | None) -> np.ndarray:
        """(N, C) probabilities of normalised float32 images (N, 3, S, S), with the graph's
        temperature and the TTA: what the call computes after normalising (the server's infer route)."""
        feeds = {} if metadata is None else {INPUTS[1]: metadata.astype(np.float32)}
        views = tta_views(batch, self.tta)
        probabilities = [
            self.session.run([OUTPUT], {INPUTS[0]: np.ascontiguousarray(view), **feeds})[0] for view in views
        ]
        return np.mean(probabilities, axis=0)
