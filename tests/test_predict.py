import ast
import dataclasses
import json
import logging
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, model_info, run_module
from PIL import Image

import skinlesion.predict.run as library
from skinlesion.classes import CLASSES
from skinlesion.cli import main as skinlesion
from skinlesion.data.arrays import ImageWriter
from skinlesion.data.dataset import ImageArrayDataset
from skinlesion.data.images import load_image
from skinlesion.errors import DataError, DeviceError
from skinlesion.model.architectures import build_model
from skinlesion.model.model_file import save_checkpoint
from skinlesion.predict.records import Failure, Prediction
from skinlesion.predict.torch_classifier import TorchClassifier
from skinlesion.transforms.normalize import normalize


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(0)
    model = build_model("densenet121", 8, "none").eval()
    save_checkpoint(tmp_path / "model.pt", model, model_info())
    return tmp_path / "model.pt", model


def test_predict_matches_evaluation_and_survives_a_bad_file(cli, tmp_path, model_file):
    path, model = model_file
    rng = np.random.default_rng(0)
    good = tmp_path / "lesion.jpg"
    Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(good)
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")

    result = cli(
        "predict",
        str(bad),
        str(good),
        "--model",
        str(path),
        "--json",
        "--top",
        "8",
        "--cam",
        str(tmp_path / "cams"),
        "--batch-size",
        "1",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert f"{bad}: error: cannot decode" in result.stderr
    report = json.loads(result.stdout)
    assert set(report[0]) == {"image", "error"} and report[0]["image"] == str(bad)
    assert report[0]["error"].startswith("cannot decode")  # the reason the file was not read
    predicted = {p["class"]: p["probability"] for p in report[1]["predictions"]}
    assert set(predicted) == set(CLASSES) and sum(predicted.values()) == pytest.approx(1, abs=1e-3)
    assert (tmp_path / "cams" / "lesion.png").is_file()

    # the same image through prepare-split's decoding and evaluate's dataset
    with ImageWriter(tmp_path / "test.npy", 1, 64) as writer:
        writer.write(0, load_image(good, 64))
    dataset = ImageArrayDataset(
        tmp_path, pd.DataFrame({"split": ["test"], "row": [0], "label": ["NV"]}), CLASSES, normalize()
    )
    with torch.no_grad():
        expected = torch.softmax(model(dataset[0][0][None]), dim=1)[0].numpy()
    assert [predicted[name] for name in CLASSES] == pytest.approx(expected, abs=1e-4)


def test_predict_table_output(tmp_path, model_file):
    path, _ = model_file
    image = tmp_path / "a.png"
    Image.fromarray(np.full((50, 50, 3), 90, np.uint8)).save(image)
    result = run_module("skinlesion", "predict", str(image), "--model", str(path), "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # the `python -m skinlesion predict` form works too
    line = result.stdout.strip()
    assert line.startswith(str(image)) and len(line.split()) == 1 + 2 * 3


def test_predict_batches_give_the_same_probabilities(cli, tmp_path, model_file):
    path, _ = model_file
    rng = np.random.default_rng(1)
    images = []
    for i in range(5):
        images.append(tmp_path / f"l{i}.png")
        Image.fromarray(rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)).save(images[-1])
    runs = [
        json.loads(
            cli(
                "predict",
                *map(str, images),
                "--model",
                str(path),
                "--json",
                "--top",
                "8",
                "--batch-size",
                batch,
                cwd=tmp_path,
            ).stdout
        )
        for batch in ("1", "2", "32")
    ]
    probabilities = [
        [p["probability"] for r in run for p in sorted(r["predictions"], key=lambda p: p["class"])] for run in runs
    ]
    assert probabilities[1] == pytest.approx(probabilities[0], abs=2e-4)
    assert probabilities[2] == pytest.approx(probabilities[0], abs=2e-4)


def test_a_model_without_metadata_ignores_metadata_options_and_says_so(cli, tmp_path, model_file):
    path, _ = model_file
    image = tmp_path / "a.png"
    Image.fromarray(np.full((50, 50, 3), 90, np.uint8)).save(image)
    result = cli("predict", str(image), "--model", str(path), "--age", "40", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "the model takes no metadata; --metadata/--age/--sex/--site are ignored" in result.stderr


def _images(folder, count: int) -> list:
    rng = np.random.default_rng(2)
    paths = []
    for i in range(count):
        paths.append(folder / f"ISIC_{i:07d}.png")
        Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def _run(*args: str) -> int:
    with pytest.raises(SystemExit) as status:
        skinlesion([*args])
    return status.value.code


def test_results_are_written_as_they_come_and_a_rerun_continues_where_it_stopped(tmp_path, model_file, monkeypatch):
    path, model = model_file
    images = tmp_path / "images"
    images.mkdir()
    _images(images, 5)
    calibrated = tmp_path / "calibrated.pt"  # a submission needs the unknown threshold
    save_checkpoint(calibrated, model, model_info(unknown_threshold=0.3))
    whole = tmp_path / "whole"
    common = ("predict", str(images), "--model", str(calibrated), "--batch-size", "2")
    assert _run(*common, "--out", f"{whole}.csv", "--isic-submission", f"{whole}-submission.csv") == 0

    original, batches = library.classify_batches, {"count": 0}

    def interrupted(*args, **kwargs):
        for results in original(*args, **kwargs):
            if batches["count"] == 2:
                raise KeyboardInterrupt  # after two batches of two images
            batches["count"] += 1
            yield results

    monkeypatch.setattr(library, "classify_batches", interrupted)
    out, submission = tmp_path / "out.csv", tmp_path / "submission.csv"
    with pytest.raises(KeyboardInterrupt):
        skinlesion([*common, "--out", str(out), "--isic-submission", str(submission)])
    partial = tmp_path / "out.csv.partial"
    assert not out.exists() and len(partial.read_text().splitlines()) == 1 + 4  # the header, two batches
    with open(partial, "a") as file:
        file.write(f"{images / 'ISIC_0000004.png'},NV,0.1")  # a row cut short by the interruption
    monkeypatch.setattr(library, "classify_batches", original)
    assert _run(*common, "--out", str(out), "--isic-submission", str(submission)) == 0
    assert out.read_bytes() == (tmp_path / "whole.csv").read_bytes()  # complete, in order, nothing twice
    assert submission.read_bytes() == (tmp_path / "whole-submission.csv").read_bytes()
    assert not partial.exists()
    table = pd.read_csv(out)
    assert list(table["image"]) == [str(images / f"ISIC_{i:07d}.png") for i in range(5)]
    assert table["unknown_score"].to_numpy() == pytest.approx(1 - table.filter(like="p_").max(axis=1), abs=2e-6)
    assert _run(*common, "--out", str(out)) == 0 and out.read_bytes() == (tmp_path / "whole.csv").read_bytes()

    lines = tmp_path / "out.jsonl"
    assert _run(*common, "--out", str(lines)) == 0
    rows = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [row["image"] for row in rows] == list(table["image"])
    assert [row["p_MEL"] for row in rows] == pytest.approx(table["p_MEL"].tolist())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch-size", "0"], "argument --batch-size: must be a whole number of at least 1, got '0'"),
        (["--top", "-1"], "argument --top: must be a whole number of at least 1, got '-1'"),
        (["--out", "results.txt"], "results.txt: write results as .csv or .jsonl (JSON lines)"),
        (["--isic-submission", "submission.jsonl"], "submission.jsonl: the ISIC 2019 submission is a .csv file"),
    ],
)
def test_bad_arguments_stop_with_status_2_and_say_why(tmp_path, model_file, capsys, args, message):
    path, model = model_file
    save_checkpoint(path, model, model_info(unknown_threshold=0.3))
    image = _images(tmp_path, 1)[0]
    assert _run("predict", str(image), "--model", str(path), *args) == 2
    assert message in capsys.readouterr().err


def test_a_folder_without_images_and_a_device_not_here_are_refused(tmp_path, model_file, capsys):
    path, _ = model_file
    (tmp_path / "empty").mkdir()
    assert _run("predict", str(tmp_path / "empty"), "--model", str(path)) == 2
    assert f"skinlesion predict: error: {tmp_path / 'empty'}: no images in it" in capsys.readouterr().err
    if not torch.cuda.is_available():
        image = _images(tmp_path, 1)[0]
        assert _run("predict", str(image), "--model", str(path), "--device", "cuda") == 2
        assert "--device is cuda, but this machine has no CUDA device" in capsys.readouterr().err


def test_the_help_and_check_params_answer_without_importing_torch(tmp_path):
    code = (
        "import sys; from skinlesion.cli import main\n"
        "try: main(sys.argv[1:])\n"
        "except SystemExit as exit_: print(exit_.code, 'torch' in sys.modules)"
    )
    for args in (["--help"], ["check-params", str(REPO / "params.yaml")]):
        shown = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path)
        assert shown.stdout.strip().splitlines()[-1] == "0 False", shown.stderr


def test_a_rerun_with_other_settings_is_refused_and_a_refused_run_moves_no_file(
    tmp_path, model_file, monkeypatch, capsys
):
    path, _ = model_file
    images = tmp_path / "images"
    images.mkdir()
    _images(images, 3)
    out = tmp_path / "out.csv"
    original = library.classify_batches

    def interrupted(*args, **kwargs):
        yield next(original(*args, **kwargs))
        raise KeyboardInterrupt

    monkeypatch.setattr(library, "classify_batches", interrupted)
    with pytest.raises(KeyboardInterrupt):
        skinlesion(["predict", str(images), "--model", str(path), "--batch-size", "2", "--out", str(out)])
    monkeypatch.setattr(library, "classify_batches", original)
    capsys.readouterr()
    assert _run("predict", str(images), "--model", str(path), "--out", str(out), "--tta", "flips") == 2
    assert "out.csv.partial: the unfinished output of another run (tta: 'none' then, 'flips' now)" in (
        capsys.readouterr().err
    )
    assert _run("predict", str(images), "--model", str(path), "--out", str(out)) == 0  # as it was: it finishes
    finished = out.read_bytes()

    (tmp_path / "empty").mkdir()
    assert _run("predict", str(tmp_path / "empty"), "--model", str(path), "--out", str(out)) == 2
    assert out.read_bytes() == finished and not (tmp_path / "out.csv.partial").exists()  # left where it was
    mine = tmp_path / "mine.csv"
    mine.write_text("a,b\n1,2\n")
    assert _run("predict", str(images), "--model", str(path), "--out", str(mine)) == 2
    assert "mine.csv: not the header image,predicted" in capsys.readouterr().err
    assert mine.read_text() == "a,b\n1,2\n" and not (tmp_path / "mine.csv.partial").exists()


def test_the_summary_counts_the_images_predicted_and_the_files_not_read_apart(tmp_path, model_file, capsys, caplog):
    path, _ = model_file
    folder = tmp_path / "images"
    folder.mkdir()
    _images(folder, 3)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "x.jpg").mkdir()  # a folder named as an image
    caplog.set_level(logging.INFO)
    assert _run("predict", str(folder), "--model", str(path), "--json") == 1
    shown = json.loads(capsys.readouterr().out)
    assert sum("predictions" in item for item in shown) == 3 and sum("error" in item for item in shown) == 2
    assert "predicted 3 images (2 could not be read)" in caplog.text


def test_the_library_yields_typed_records_and_a_new_plan_resumes_where_the_output_stopped(tmp_path, model_file):
    path, _ = model_file
    folder = tmp_path / "images"
    folder.mkdir()
    _images(folder, 3)
    broken = folder / "broken.png"  # sorted after the ISIC_ names
    broken.write_bytes(b"")
    classify = library.load_classifier(path, device="cpu")
    assert isinstance(classify, TorchClassifier)
    out = tmp_path / "out.csv"
    plan = library.plan(classify, [folder], model_path=path, results_path=out)
    assert plan.remaining == plan.images and len(plan.images) == 4
    first = next(library.predict(plan, batch_size=3))  # then interrupted: its rows are in the file

    resumed = library.plan(classify, [folder], model_path=path, results_path=out)
    assert resumed.remaining == (broken,)
    (failure,) = [result for results in library.predict(resumed, batch_size=3) for result in results]
    assert isinstance(failure, Failure) and failure.image == str(broken) and failure.error.startswith("cannot decode")
    table = pd.read_csv(out)
    assert list(table["image"]) == [result.image for result in first] + [str(broken)]

    assert all(isinstance(result, Prediction) for result in first)
    prediction = first[0]
    assert list(prediction.probabilities) == list(classify.info.classes)
    assert sum(prediction.probabilities.values()) == pytest.approx(1, abs=1e-5)
    assert prediction.predicted == prediction.top(1)[0][0] == table["predicted"][0]
    assert prediction.unknown_score == pytest.approx(1 - max(prediction.probabilities.values()), abs=1e-6)
    assert prediction.unknown is None  # the model file has no unknown threshold
    assert table.filter(like="p_").iloc[0].tolist() == [round(p, 6) for p in prediction.probabilities.values()]
    with pytest.raises(dataclasses.FrozenInstanceError):
        prediction.image = "other.png"
    with pytest.raises(TypeError):
        Failure("a.png", "why")  # keyword-only


def test_the_library_names_its_parameters_and_the_command_its_flags(tmp_path, model_file, capsys):
    path, _ = model_file
    image = _images(tmp_path, 1)[0]
    with pytest.raises(DataError, match="^cam_dir: Grad-CAM needs the model file of torch"):
        library.load_classifier(tmp_path / "model.onnx", cam_dir=tmp_path / "cams")
    classify = library.load_classifier(path, device="cpu")
    both = {"metadata_file": tmp_path / "metadata.csv", "metadata_values": {"sex": "male"}}
    with pytest.raises(DataError, match="^metadata_file and metadata_values: give a metadata file or values"):
        library.plan(classify, [image], model_path=path, **both)
    args = ("--metadata", str(tmp_path / "metadata.csv"), "--sex", "male")
    assert _run("predict", str(image), "--model", str(path), *args) == 2
    assert "error: --metadata and --age/--sex/--site: give a metadata file or values" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="^device is cuda, but this machine has no CUDA device"):
            library.load_classifier(path, device="cuda")
    # and no flag in the library's text at all, its docstrings included
    for module in (REPO / "skinlesion" / "predict").glob("*.py"):
        strings = [node.value for node in ast.walk(ast.parse(module.read_text())) if isinstance(node, ast.Constant)]
        assert not [text for text in strings if isinstance(text, str) and re.search(r"--[a-z]", text)], module


def test_the_onnx_path_imports_no_torch(tmp_path):
    modules = "skinlesion.predict.onnx_classifier, skinlesion.predict.run, skinlesion.predict.outputs"
    code = f"import sys, {modules}; print('torch' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert shown.stdout.strip() == "False", shown.stderr
