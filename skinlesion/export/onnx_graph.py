"""`skinlesion export --format onnx`: a model file (a single model or a fold ensemble) as one
ONNX graph with a dynamic batch size that returns class probabilities, its temperature(s) in
the graph, and the preprocessing it expects in the file's metadata (skinlesion.predict.onnx_classifier
runs it). The export is checked before the file appears: ONNX Runtime and torch must give the
same probabilities, within TOLERANCE, on a batch of random inputs of another batch size than
the one traced."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from skinlesion.atomic import atomic_file
from skinlesion.data.metadata import FEATURES
from skinlesion.errors import MissingExtraError, WeightsError
from skinlesion.model.checkpoint import load_checkpoint
from skinlesion.model.inference import log_probabilities
from skinlesion.model.info import ModelInfo
from skinlesion.predict.onnx_classifier import INFO_KEY, INPUTS, OUTPUT, OnnxClassifier, import_onnxruntime, stored_info

log = logging.getLogger(__name__)

# the largest difference in any class probability allowed between ONNX Runtime and torch
TOLERANCE = 1e-4


class Probabilities(nn.Module):
    """What the graph computes: class probabilities of a batch as evaluate computes them
    (inference.log_probabilities, without TTA, with the model file's temperature; a
    FoldEnsemble averages its members, each with its own)."""

    def __init__(self, model: nn.Module, temperature: float):
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, images: torch.Tensor, metadata: torch.Tensor | None = None) -> torch.Tensor:
        return log_probabilities(self.model, images, temperature=self.temperature, metadata=metadata).exp()


def description(info: ModelInfo) -> dict[str, str]:
    """The file's metadata: the preprocessing and the output in words and values, for whoever
    runs the graph without this package, and the whole ModelInfo under INFO_KEY."""
    size, members = info.image_size, len(info.per_model)
    steps = ["decode as RGB", "crop the dark dermoscope frame" if info.crop_border else None]
    steps += ["Shades of Gray colour constancy (p=6)" if info.color_constancy else None, f"resize to {size}x{size}"]
    metadata = {}
    if info.uses_metadata:
        metadata = {
            "metadata_features": json.dumps(list(info.metadata)),
            "metadata_encoding": "age in years / 100 (0 when missing); one-hot sex and anatomical site; "
            "each field ends with its missing flag (1 when the value is missing)",
        }
    return {
        "input_images": f"float32 (N, 3, {size}, {size}) RGB: pixels / 255, then (x - mean) / std per channel",
        "preprocessing": ", ".join(step for step in steps if step),
        "input_size": str(size),
        "mean": json.dumps(list(info.mean)),
        "std": json.dumps(list(info.std)),
        "classes": json.dumps(list(info.classes)),
        **metadata,
        "output": f"{OUTPUT}: float32 (N, {len(info.classes)}) in the order of classes, softmax(logits / "
        f"temperature) " + (f"averaged over {members} fold models" if info.is_ensemble else "of one model"),
        "temperatures": json.dumps([member.temperature for member in info.per_model]),
        "unknown_threshold": json.dumps(info.unknown_threshold),
        "unknown_rule": "unknown when 1 - max(probabilities) > unknown_threshold",
        INFO_KEY: stored_info(info),
    }


def export_onnx(model_path: Path, out: Path) -> float:
    """Write the model in `model_path` to `out` as ONNX; returns the largest difference between
    ONNX Runtime's and torch's probabilities on the check batch (a WeightsError above
    TOLERANCE, and no file written)."""
    import_onnxruntime("skinlesion export --format onnx")
    try:
        import onnx
        import onnxscript  # noqa: F401 -- torch.onnx's exporter writes the graph with it
    except ImportError as error:
        raise MissingExtraError(
            f'skinlesion export needs onnx and onnxscript ({error}): pip install -e ".[onnx]"'
        ) from None
    model, info = load_checkpoint(model_path)
    graph = Probabilities(model, info.temperature).eval()
    traced = _inputs(info, batch=2, seed=0)
    batch = torch.export.Dim("batch", min=1)
    names = list(INPUTS[: len(traced)])
    shapes = {name: {0: batch} for name in names}
    for name in ("onnxscript", "onnx_ir"):  # the exporter's notes on each of its passes
        logging.getLogger(name).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # and on its own internals
        program = torch.onnx.export(
            graph, traced, input_names=names, output_names=[OUTPUT], dynamic_shapes=shapes, dynamo=True, verbose=False
        )
    proto = program.model_proto
    proto.producer_name, proto.doc_string = "skinlesion", f"{info.arch} for {len(info.classes)} skin-lesion classes"
    onnx.helper.set_model_props(proto, description(info))
    with atomic_file(out) as tmp:
        onnx.save_model(proto, tmp)
        difference = _check(tmp, graph, info)
        if difference > TOLERANCE:
            raise WeightsError(
                f"{model_path}: the ONNX graph's probabilities differ from torch's by {difference:.2g} "
                f"(more than {TOLERANCE:g}): not written"
            )
    log.info("wrote %s: ONNX Runtime matches torch within %.1g", out, difference)
    return difference


def _inputs(info: ModelInfo, batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    """A batch of random normalised images (and random metadata for a model that takes it)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, info.image_size, info.image_size, generator=generator)
    if not info.uses_metadata:
        return (images,)
    return images, torch.rand(batch, len(FEATURES), generator=generator)


def _check(path: Path, graph: Probabilities, info: ModelInfo) -> float:
    """The largest difference in any probability between ONNX Runtime running `path` and torch
    running `graph` on 3 random inputs (a batch size other than the traced one)."""
    inputs = _inputs(info, batch=3, seed=1)
    with torch.no_grad():
        expected = graph(*inputs).numpy()
    session = OnnxClassifier(path, device="cpu").session
    feeds = {name: tensor.numpy() for name, tensor in zip(INPUTS, inputs)}
    return float(np.abs(session.run([OUTPUT], feeds)[0] - expected).max())
