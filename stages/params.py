"""The one loader of params.yaml: typed, frozen, validated before any work starts.

Every stage calls :func:`load_params`. An unknown key, a missing key or a bad value raises
:class:`ParamsError` naming the dotted key (and, for a misspelling, the nearest valid one).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, Mapping

import yaml

# The ISIC 2019 diagnostic classes, in the column order of the ground-truth CSV.
CLASSES: tuple[str, ...] = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
MODEL_NAMES: tuple[str, ...] = ("densenet121", "resnet50", "efficientnet_b0")
DEVICES: tuple[str, ...] = ("auto", "cuda", "mps", "cpu")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
SCHEDULES: tuple[str, ...] = ("constant", "cosine")
LOSSES: tuple[str, ...] = ("cross_entropy", "weighted_cross_entropy", "focal")
COMPILE_MODES: tuple[str, ...] = ("none", "default", "reduce-overhead", "max-autotune")
BACKENDS: tuple[str, ...] = ("auto", "nccl", "gloo")
AUGMENT_ON: tuple[str, ...] = ("loader", "device")


class ParamsError(ValueError):
    """A params.yaml key is unknown, missing or has a bad value."""


def _fail(key: str, message: str) -> typing.NoReturn:
    raise ParamsError(f"params: {key}: {message}")


@dataclasses.dataclass(frozen=True)
class DataParams:
    root: str  # folder holding the ISIC 2019 CSVs and ISIC_2019_Training_Input/


@dataclasses.dataclass(frozen=True)
class SampleParams:
    """The synthetic ISIC-format sample written by the make-sample stage."""

    num_images: int
    min_per_class: int
    scale: float  # size relative to the real 600x450 and 1024x1024 images
    seed: int

    def validate(self, key: str) -> None:
        _positive(f"{key}.num_images", self.num_images)
        _positive(f"{key}.min_per_class", self.min_per_class)
        if not 0.05 <= self.scale <= 1.0:
            _fail(f"{key}.scale", f"must be within [0.05, 1], got {self.scale}")
        if self.min_per_class * len(CLASSES) > self.num_images:
            _fail(f"{key}.min_per_class", "times the 8 classes exceeds sample.num_images")


@dataclasses.dataclass(frozen=True)
class PrepareParams:
    image_size: int  # pixels; images are stored as image_size x image_size RGB uint8
    val_fraction: float
    test_fraction: float
    skip_bad_images: bool  # skip (and report) missing or corrupt images instead of failing
    crop_border: bool  # cut away a dark circular dermoscope frame (winning ISIC 2019 entry)
    color_constancy: bool  # Shades of Gray, Minkowski p=6 (winning ISIC 2019 entry)
    workers: int  # decoding processes; 0 means one per CPU core
    seed: int

    def validate(self, key: str) -> None:
        if not 32 <= self.image_size <= 1024:
            _fail(f"{key}.image_size", f"must be within [32, 1024], got {self.image_size}")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                _fail(f"{key}.{name}", f"must be within (0, 1), got {value}")
        if self.val_fraction + self.test_fraction >= 1.0:
            _fail(f"{key}.test_fraction", "val_fraction + test_fraction must be below 1")
        if self.workers < 0:
            _fail(f"{key}.workers", f"must be >= 0, got {self.workers}")


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    majority_classes: tuple[str, ...]
    majority_target: int
    minority_target: int
    kmeans_clusters: int
    seed: int

    def validate(self, key: str) -> None:
        _known_classes(f"{key}.majority_classes", self.majority_classes)
        _positive(f"{key}.majority_target", self.majority_target)
        _positive(f"{key}.minority_target", self.minority_target)
        _positive(f"{key}.kmeans_clusters", self.kmeans_clusters)

    def targets(self) -> dict[str, int]:
        """Training images per class after resampling (the published table on ISIC 2019)."""
        return {
            name: self.majority_target if name in self.majority_classes else self.minority_target
            for name in CLASSES
        }


@dataclasses.dataclass(frozen=True)
class AugmentationParams:
    rotation_range: float  # degrees, rotations drawn from [-range, range]
    h_flip: bool
    v_flip: bool
    color_jitter: tuple[float, float, float, float]  # brightness, contrast, saturation, hue
    crop_scale: tuple[float, float]  # RandomResizedCrop area range
    seed: int

    def validate(self, key: str) -> None:
        if not 0 <= self.rotation_range <= 180:
            _fail(f"{key}.rotation_range", f"must be within [0, 180], got {self.rotation_range}")
        if any(v < 0 for v in self.color_jitter) or self.color_jitter[3] > 0.5:
            _fail(f"{key}.color_jitter", "values must be >= 0 and hue <= 0.5")
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            _fail(f"{key}.crop_scale", f"must satisfy 0 < low <= high <= 1, got {self.crop_scale}")


@dataclasses.dataclass(frozen=True)
class ModelParams:
    name: str
    num_classes: int
    weights: str  # "imagenet", "none", or a path to a weights file

    def validate(self, key: str) -> None:
        if self.name not in MODEL_NAMES:
            _fail(f"{key}.name", f"unknown model {self.name!r}; choose one of {list(MODEL_NAMES)}")
        if self.num_classes != len(CLASSES):
            _fail(f"{key}.num_classes", f"must be {len(CLASSES)} (the ISIC 2019 classes)")


@dataclasses.dataclass(frozen=True)
class TrainingParams:
    batch_size: int
    epochs: int
    learning_rate: float
    device: str  # auto picks CUDA, then Apple MPS, then CPU
    precision: str  # fp32 (TF32 tensor cores on CUDA), or bf16/fp16 autocast on CUDA
    num_workers: int
    seed: int
    lr_schedule: str  # constant (published), or cosine decay after a linear warmup
    warmup_epochs: int
    weight_decay: float  # Adam's L2 penalty
    loss: str  # cross_entropy (published), weighted_cross_entropy (inverse class frequency), focal
    focal_gamma: float
    label_smoothing: float
    early_stopping_patience: int  # epochs without a better val balanced accuracy; 0: never stop
    grad_clip_norm: float  # 0: no clipping
    augment_on: str  # loader: per image in the DataLoader workers; device: per batch after the transfer
    compile: str  # torch.compile mode for the training step, or none
    processes: int  # training processes (DistributedDataParallel, one per GPU) when > 1
    backend: str  # torch.distributed backend: auto (nccl on CUDA, else gloo), nccl, gloo
    timeout_s: int  # how long processes wait for each other before failing

    def validate(self, key: str) -> None:
        _positive(f"{key}.batch_size", self.batch_size)
        _positive(f"{key}.epochs", self.epochs)
        if self.lr_schedule not in SCHEDULES:
            _fail(f"{key}.lr_schedule", f"unknown schedule {self.lr_schedule!r}; choose one of {list(SCHEDULES)}")
        if self.loss not in LOSSES:
            _fail(f"{key}.loss", f"unknown loss {self.loss!r}; choose one of {list(LOSSES)}")
        if not 0 <= self.warmup_epochs < self.epochs:
            _fail(f"{key}.warmup_epochs", f"must be within [0, epochs), got {self.warmup_epochs}")
        if not 0 <= self.label_smoothing < 1:
            _fail(f"{key}.label_smoothing", f"must be within [0, 1), got {self.label_smoothing}")
        for name in ("weight_decay", "focal_gamma", "grad_clip_norm", "early_stopping_patience"):
            if getattr(self, name) < 0:
                _fail(f"{key}.{name}", f"must be >= 0, got {getattr(self, name)}")
        if not 0 < self.learning_rate < 1:
            _fail(f"{key}.learning_rate", f"must be within (0, 1), got {self.learning_rate}")
        if self.device not in DEVICES:
            _fail(f"{key}.device", f"unknown device {self.device!r}; choose one of {list(DEVICES)}")
        if self.precision not in PRECISIONS:
            _fail(f"{key}.precision", f"unknown precision {self.precision!r}; choose one of {list(PRECISIONS)}")
        if self.num_workers < 0:
            _fail(f"{key}.num_workers", f"must be >= 0, got {self.num_workers}")
        if self.augment_on not in AUGMENT_ON:
            _fail(f"{key}.augment_on", f"unknown place {self.augment_on!r}; choose one of {list(AUGMENT_ON)}")
        if self.compile not in COMPILE_MODES:
            _fail(f"{key}.compile", f"unknown mode {self.compile!r}; choose one of {list(COMPILE_MODES)}")
        if self.backend not in BACKENDS:
            _fail(f"{key}.backend", f"unknown backend {self.backend!r}; choose one of {list(BACKENDS)}")
        _positive(f"{key}.processes", self.processes)
        _positive(f"{key}.timeout_s", self.timeout_s)
        if self.batch_size % self.processes:
            _fail(f"{key}.batch_size", f"{self.batch_size} does not split evenly over {self.processes} processes (it is the batch of all processes together)")


@dataclasses.dataclass(frozen=True)
class EvaluateParams:
    batch_size: int
    bootstrap_resamples: int  # for the 95% interval of balanced accuracy
    calibration_bins: int  # equal-width confidence bins of the ECE and reliability diagram
    seed: int

    def validate(self, key: str) -> None:
        _positive(f"{key}.batch_size", self.batch_size)
        _positive(f"{key}.bootstrap_resamples", self.bootstrap_resamples)
        _positive(f"{key}.calibration_bins", self.calibration_bins)


@dataclasses.dataclass(frozen=True)
class GradcamParams:
    correct_per_class: int  # test images explained per class, rightly classified
    wrong_per_class: int  # and wrongly classified
    seed: int

    def validate(self, key: str) -> None:
        for name in ("correct_per_class", "wrong_per_class"):
            if getattr(self, name) < 0:
                _fail(f"{key}.{name}", f"must be >= 0, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class Params:
    data: DataParams
    sample: SampleParams
    prepare: PrepareParams
    sampling: SamplingParams
    augmentation: AugmentationParams
    model: ModelParams
    training: TrainingParams
    evaluate: EvaluateParams
    gradcam: GradcamParams


def _positive(key: str, value: float) -> None:
    if value <= 0:
        _fail(key, f"must be > 0, got {value}")


def _known_classes(key: str, names: tuple[str, ...]) -> None:
    for name in names:
        if name not in CLASSES:
            _fail(key, f"unknown class {name!r}; the classes are {list(CLASSES)}")


def _convert(key: str, hint: Any, value: Any) -> Any:
    """Check `value` against the type hint `hint` and return it in that type."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            _fail(key, f"must be a list, got {value!r}")
        if args[-1] is Ellipsis:
            return tuple(_convert(f"{key}[{i}]", args[0], v) for i, v in enumerate(value))
        if len(value) != len(args):
            _fail(key, f"must be a list of {len(args)} values, got {len(value)}")
        return tuple(_convert(f"{key}[{i}]", a, v) for i, (a, v) in enumerate(zip(args, value)))
    if hint is bool:
        if not isinstance(value, bool):
            _fail(key, f"must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(key, f"must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(key, f"must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            _fail(key, f"must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported params type {hint!r} at {key}")  # a bug in this module


def _build(cls: type, mapping: Any, prefix: str) -> Any:
    where = prefix or "params.yaml"
    if not isinstance(mapping, Mapping):
        _fail(where, f"must be a mapping, got {mapping!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in mapping:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {names}"
            _fail(f"{prefix}.{key}" if prefix else str(key), f"unknown key{hint}")
    values = {}
    for name in names:
        key = f"{prefix}.{name}" if prefix else name
        if name not in mapping:
            _fail(key, "missing")
        values[name] = _convert(key, hints[name], mapping[name])
    obj = cls(**values)
    if hasattr(obj, "validate"):
        obj.validate(prefix)
    return obj


def params_from_dict(mapping: Mapping[str, Any]) -> Params:
    """Build validated params from a parsed params.yaml mapping."""
    return _build(Params, mapping, "")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; raise ParamsError naming the bad key."""
    path = Path(path)
    try:
        mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"params: {path} not found (run from the repository root)") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"params: {path} is not valid YAML: {error}") from None
    return params_from_dict(mapping or {})
