import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import model_info, run_cli, run_module
from PIL import Image

from skinlesion.classes import CLASSES
from skinlesion.data.arrays import ImageWriter
from skinlesion.data.dataset import ImageArrayDataset
from skinlesion.data.images import load_image
from skinlesion.model.architectures import build_model
from skinlesion.model.checkpoint import save_checkpoint
from skinlesion.transforms.normalize import normalize


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(0)
    model = build_model("densenet121", 8, "none").eval()
    save_checkpoint(tmp_path / "model.pt", model, model_info())
    return tmp_path / "model.pt", model


def test_predict_matches_evaluation_and_survives_a_bad_file(tmp_path, model_file):
    path, model = model_file
    rng = np.random.default_rng(0)
    good = tmp_path / "lesion.jpg"
    Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(good)
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")

    result = run_cli(
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
    dataset = ImageArrayDataset(tmp_path, pd.DataFrame({"split": ["test"], "row": [0], "label": ["NV"]}), normalize())
    with torch.no_grad():
        expected = torch.softmax(model(dataset[0][0][None]), dim=1)[0].numpy()
    assert [predicted[name] for name in CLASSES] == pytest.approx(expected, abs=1e-4)


def test_predict_table_output(tmp_path, model_file):
    path, _ = model_file
    image = tmp_path / "a.png"
    Image.fromarray(np.full((50, 50, 3), 90, np.uint8)).save(image)
    result = run_module("skinlesion.predict", str(image), "--model", str(path), "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # the `python -m skinlesion.predict` form works too
    line = result.stdout.strip()
    assert line.startswith(str(image)) and len(line.split()) == 1 + 2 * 3


def test_predict_batches_give_the_same_probabilities(tmp_path, model_file):
    path, _ = model_file
    rng = np.random.default_rng(1)
    images = []
    for i in range(5):
        images.append(tmp_path / f"l{i}.png")
        Image.fromarray(rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)).save(images[-1])
    runs = [
        json.loads(
            run_cli(
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


def test_a_model_without_metadata_ignores_metadata_options_and_says_so(tmp_path, model_file):
    path, _ = model_file
    image = tmp_path / "a.png"
    Image.fromarray(np.full((50, 50, 3), 90, np.uint8)).save(image)
    result = run_cli("predict", str(image), "--model", str(path), "--age", "40", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "the model takes no metadata; --metadata/--age/--sex/--site are ignored" in result.stderr
