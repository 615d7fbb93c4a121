"""The bad-input corpus of model files: every reader of a model.pt, weights file or training
state refuses each one with an error naming the file (or, for the state, starts over), and a
pickle that would run code is never run."""

import dataclasses
import pickle
import random

import numpy as np
import pytest
import torch
import torchvision
from conftest import model_info, run_module, write_params

from skinlesion.classes import CLASSES, write_classes
from skinlesion.errors import WeightsError
from skinlesion.model.architectures import build_model
from skinlesion.model.checkpoint import load_checkpoint
from skinlesion.model.model_file import save_checkpoint
from skinlesion.predict.outputs import submission_row
from skinlesion.predict.records import Prediction
from skinlesion.predict.torch_classifier import TorchClassifier
from skinlesion.training.resume import load_state

INFO = model_info(mean=[0.5] * 3, std=[0.2] * 3)


class _Exploit:
    """Unpickling this creates a file: the proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _checkpoint(path, state_dict, **changes):
    torch.save({"state_dict": state_dict, **INFO.stored(), **changes}, path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """{name: (path, expected message)} for each kind of bad model file."""
    folder = tmp_path_factory.mktemp("bad-models")
    densenet = build_model("densenet121", 8, "none").state_dict()
    save_checkpoint(folder / "good.pt", build_model("densenet121", 8, "none"), INFO)
    shuffled = random.Random(0).sample(list(CLASSES), len(CLASSES))
    files = {
        "other architecture": (
            lambda p: _checkpoint(p, build_model("resnet50", 8, "none").state_dict()),
            "weights do not fit densenet121 with 8 classes",
        ),
        "other class count": (
            lambda p: save_checkpoint(p, build_model("densenet121", 7, "none"), INFO),
            "weights do not fit densenet121 with 8 classes",
        ),
        "classes in another order": (lambda p: _checkpoint(p, densenet, classes=shuffled), "the model predicts"),
        "unknown architecture": (lambda p: _checkpoint(p, densenet, arch="vgg16"), "unknown architecture 'vgg16'"),
        "bare torchvision weights": (
            lambda p: torch.save(torchvision.models.densenet121(weights=None).state_dict(), p),
            "not a model of this project (missing",
        ),
        "a tensor, not a checkpoint": (
            lambda p: torch.save(torch.zeros(3), p),
            "not a model of this project (holds a Tensor)",
        ),
        "state_dict that is a list": (lambda p: _checkpoint(p, [1, 2, 3]), "weights do not fit"),
        "pickle that runs code": (
            lambda p: p.write_bytes(pickle.dumps({"state_dict": _Exploit(str(folder / "pwned"))})),
            "not a loadable model file",
        ),
        "text file": (lambda p: p.write_text("not a model\n"), "not a loadable model file"),
        "zero bytes": (lambda p: p.write_bytes(b""), "not a loadable model file"),
        "truncated checkpoint": (
            lambda p: p.write_bytes((folder / "good.pt").read_bytes()[:100_000]),
            "not a loadable model file",
        ),
    }
    made = {}
    for number, (name, (make, message)) in enumerate(files.items()):
        path = folder / f"bad{number}.pt"
        make(path)
        made[name] = (path, message)
    return made


CASES = [
    "other architecture",
    "other class count",
    "classes in another order",
    "unknown architecture",
    "bare torchvision weights",
    "a tensor, not a checkpoint",
    "state_dict that is a list",
    "pickle that runs code",
    "text file",
    "zero bytes",
    "truncated checkpoint",
]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("case", CASES)
def test_every_bad_model_file_is_refused_naming_it(corpus, case):
    path, message = corpus[case]
    with pytest.raises(WeightsError) as error:
        load_checkpoint(path, CLASSES)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)
    assert not (path.parent / "pwned").exists()


def test_predict_names_each_probability_by_the_models_own_class_order(corpus, tmp_path):
    """The same network saved with its classes shuffled, and with its classifier's rows put in
    the project's order: predict gives each class the same probability, and the submission
    puts the columns in the official order."""
    shuffled_model, shuffled = load_checkpoint(corpus["classes in another order"][0])
    assert shuffled.classes != CLASSES
    rows = [shuffled.classes.index(name) for name in CLASSES]
    state = shuffled_model.state_dict()
    state["classifier.weight"], state["classifier.bias"] = (
        state["classifier.weight"][rows],
        state["classifier.bias"][rows],
    )
    ordered_model = build_model("densenet121", len(CLASSES), "none")
    ordered_model.load_state_dict(state)
    save_checkpoint(tmp_path / "ordered.pt", ordered_model, dataclasses.replace(shuffled, classes=CLASSES))
    ordered_model, ordered = load_checkpoint(tmp_path / "ordered.pt", CLASSES)

    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    cpu = torch.device("cpu")
    by_shuffled = TorchClassifier(shuffled_model, shuffled, cpu)([image], ["ISIC_1"], None)[0]
    by_ordered = TorchClassifier(ordered_model, ordered, cpu)([image], ["ISIC_1"], None)[0]
    named = dict(zip(shuffled.classes, by_shuffled))
    assert [named[name] for name in CLASSES] == pytest.approx(by_ordered.tolist(), abs=1e-6)
    assert not np.allclose(by_shuffled, by_ordered)  # the columns really were in another order

    calibrated = dataclasses.replace(shuffled, unknown_threshold=0.5)
    row = submission_row(Prediction.of("ISIC_1.jpg", by_shuffled, calibrated), calibrated)
    assert list(row) == ["image", *CLASSES, "UNK"] and row["image"] == "ISIC_1"
    # the row rounds to 6 decimals (at most 5e-7 off); rounding by_ordered too could land the two a
    # whole 1e-6 apart where they straddle a rounding boundary (they differ by about 1e-7 in float32)
    assert [row[name] for name in CLASSES] == pytest.approx(by_ordered.tolist(), abs=1e-6)


def test_a_missing_model_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'absent.pt'}: model file not found"):
        load_checkpoint(tmp_path / "absent.pt")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_weights_and_training_state_readers_never_run_a_pickle(corpus, tmp_path):
    path, _ = corpus["pickle that runs code"]
    with pytest.raises(WeightsError, match="not a loadable weights file"):
        build_model("densenet121", 8, str(path))
    assert load_state(path, "any fingerprint") is None  # a state that cannot be trusted: start over
    with pytest.raises(WeightsError, match=f"model.weights: {tmp_path / 'absent.pth'} is not a file"):
        build_model("densenet121", 8, str(tmp_path / "absent.pth"))
    assert not (path.parent / "pwned").exists()


@pytest.mark.parametrize(
    "module, args",
    [
        (
            "stages.evaluate",
            [
                "--prepared",
                "prepared",
                "--metrics",
                "metrics/eval.json",
                "--predictions",
                "eval/predictions.csv",
                "--curves",
                "eval/curves",
            ],
        ),
        (
            "stages.gradcam",
            ["--prepared", "prepared", "--predictions", "eval/predictions.csv", "--out", "plots/gradcam"],
        ),
        ("skinlesion", ["predict", "image.jpg"]),
    ],
)
def test_each_reader_stage_stops_naming_the_file_and_writes_nothing(corpus, tmp_path, module, args):
    write_params(tmp_path, {})
    (tmp_path / "prepared").mkdir()
    write_classes(tmp_path / "prepared", CLASSES)
    path, message = corpus["other architecture"]
    result = run_module(module, *args, "--model", str(path), cwd=tmp_path)
    assert result.returncode != 0 and f"{path}: {message}" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "prepared"]
