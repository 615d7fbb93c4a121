"""The unknown score, its threshold from validation, and the ISIC 2019 submission file."""

import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import model_info
from PIL import Image

from skinlesion.classes import CLASSES
from skinlesion.data.isic import GROUND_TRUTH_COLUMNS
from skinlesion.model.architectures import build_model
from skinlesion.model.model_file import save_checkpoint
from skinlesion.model.unknown import KEEP_KNOWN, unknown_scores, unknown_threshold


def test_the_score_is_one_minus_the_top_probability_and_the_threshold_keeps_the_share():
    probabilities = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [1 / 3, 1 / 3, 1 / 3]])
    assert unknown_scores(probabilities) == pytest.approx([0.1, 0.6, 2 / 3])
    scores = np.random.default_rng(0).uniform(0, 0.8, 1000)
    threshold = unknown_threshold(scores)
    assert (scores <= threshold).mean() >= KEEP_KNOWN > (scores < threshold).mean()


@pytest.fixture
def model_folder(tmp_path):
    torch.manual_seed(0)
    model = build_model("densenet121", len(CLASSES), "none").eval()
    save_checkpoint(tmp_path / "model.pt", model, model_info(unknown_threshold=0.2))
    save_checkpoint(tmp_path / "old.pt", model, model_info())
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(tmp_path / f"ISIC_{i:07d}.jpg")
    (tmp_path / "ISIC_0000009.jpg").write_text("not an image")
    return tmp_path


def test_the_submission_has_the_official_header_a_row_per_image_and_unk_from_the_score(cli, model_folder, tmp_path):
    out, model = tmp_path / "submission.csv", str(model_folder / "model.pt")
    result = cli("predict", str(model_folder), "--model", model, "--isic-submission", str(out), cwd=model_folder)
    assert result.returncode == 1 and "ISIC_0000009.jpg: error: cannot decode" in result.stderr  # named, rest written
    assert out.read_text().splitlines()[0] == ",".join(GROUND_TRUTH_COLUMNS)
    table = pd.read_csv(out)
    assert list(table["image"]) == [f"ISIC_{i:07d}" for i in range(5)]
    values = table[[*CLASSES, "UNK"]].to_numpy()
    assert ((values >= 0) & (values <= 1)).all()
    assert table[list(CLASSES)].sum(axis=1).to_numpy() == pytest.approx(1, abs=1e-4)
    # UNK is the largest column exactly when the unknown score is above the model's threshold
    unknown = unknown_scores(table[list(CLASSES)].to_numpy()) > 0.2
    assert ((table[[*CLASSES, "UNK"]].idxmax(axis=1) == "UNK") == unknown).all()
    order = np.argsort(unknown_scores(table[list(CLASSES)].to_numpy()))
    assert np.all(np.diff(table["UNK"].to_numpy()[order]) >= -1e-6)  # ranked as the score

    # the same images in a zip archive, as the official test set comes, read in place
    archive = tmp_path / "ISIC_2019_Test_Input.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(model_folder.glob("*.jpg")):
            zipped.write(path, f"ISIC_2019_Test_Input/{path.name}")
    from_zip = tmp_path / "from_zip.csv"
    result = cli("predict", str(archive), "--model", model, "--isic-submission", str(from_zip), cwd=tmp_path)
    assert result.returncode == 1 and f"{archive}:ISIC_2019_Test_Input/ISIC_0000009.jpg: error" in result.stderr
    assert from_zip.read_bytes() == out.read_bytes()


def test_a_model_file_without_a_threshold_cannot_write_a_submission(cli, model_folder):
    result = cli(
        "predict",
        str(model_folder / "ISIC_0000000.jpg"),
        "--model",
        str(model_folder / "old.pt"),
        "--isic-submission",
        str(model_folder / "submission.csv"),
        cwd=model_folder,
    )
    assert result.returncode == 2 and "no unknown threshold" in result.stderr
    assert not (model_folder / "submission.csv").exists()
