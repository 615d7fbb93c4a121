"""The project's own errors: each says what is wrong and what to change, and is reported as
one line (skinlesion.entry), not a traceback."""


class DataError(ValueError):
    """An input file is missing, malformed, or contradicts another."""


class WeightsError(RuntimeError):
    """Pretrained weights or a model file could not be had, or do not fit the architecture."""


class TrainingError(RuntimeError):
    """Training cannot go on; the message says what to change."""


class DeviceError(RuntimeError):
    """The device asked for (training.device, predict's --device) is not on this machine."""


class MissingExtraError(ImportError):
    """A feature needs an optional extra of the package (pip install ".[onnx]") that is not installed."""
