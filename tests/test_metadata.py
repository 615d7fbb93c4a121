"""Patient metadata: parsing with gaps and bad values, its encoding, the model that fuses it,
and predict with and without it."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import model_info, write_isic_csvs
from PIL import Image

from skinlesion.classes import CLASSES
from skinlesion.data.isic import METADATA_CSV, read_labels
from skinlesion.data.metadata import FEATURES, FIELDS, SITES, check_metadata, encode_metadata
from skinlesion.errors import DataError
from skinlesion.evaluation.gradcam import GradCAM
from skinlesion.model.architectures import MetadataFusion, build_model, cam_layer
from skinlesion.model.checkpoint import load_checkpoint
from skinlesion.model.inference import log_probabilities
from skinlesion.model.model_file import save_checkpoint


def _frame(*rows: tuple[str, str, str, str]) -> pd.DataFrame:
    """Rows of (image, age_approx, anatom_site_general, sex), as the official CSV holds them."""
    return pd.DataFrame(rows, columns=["image", *FIELDS])


def missing_metadata(count: int) -> np.ndarray:
    """The metadata input of `count` images of which nothing is known."""
    return encode_metadata(pd.DataFrame({field: [""] * count for field in FIELDS}), "no metadata")


def test_gaps_stay_missing_and_values_are_normalised():
    checked = check_metadata(_frame(("a", "55.0", " Head/Neck ", "MALE"), ("b", "", "", "")), "meta.csv")
    assert checked.to_dict("records") == [
        {"age_approx": "55", "anatom_site_general": "head/neck", "sex": "male"},
        dict.fromkeys(FIELDS, ""),
    ]


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("age_approx", "130", "is not an age in years"),
        ("age_approx", "-5", "is not an age in years"),
        ("age_approx", "about 40", "is not an age in years"),
        ("anatom_site_general", "elbow", "is none of"),
        ("sex", "unknown", "is none of"),
    ],
)
def test_a_bad_value_is_an_error_naming_file_line_image_and_field(field, value, problem):
    rows = [("ISIC_1", "40", "head/neck", "female"), ("ISIC_2", "40", "head/neck", "female")]
    frame = _frame(*rows)
    frame.loc[1, field] = value
    with pytest.raises(DataError, match=rf"^meta\.csv: line 3 \(ISIC_2\): {field} '{value}' {problem}"):
        check_metadata(frame, "meta.csv")


def test_encoding_is_one_hot_with_a_missing_flag_per_field():
    encoded = encode_metadata(_frame(("a", "55", "head/neck", "male"), ("b", "", "", "female")), "meta.csv")
    assert encoded.shape == (2, len(FEATURES)) and encoded.dtype == np.float32
    first = {name: value for name, value in zip(FEATURES, encoded[0]) if value}
    assert first == {"age": pytest.approx(0.55), "sex_male": 1, "site_head/neck": 1}
    second = {name for name, value in zip(FEATURES, encoded[1]) if value}
    assert second == {"age_missing", "sex_female", "site_missing"}
    nothing = {name for name, value in zip(FEATURES, missing_metadata(1)[0]) if value}
    assert nothing == {"age_missing", "sex_missing", "site_missing"}


def test_read_labels_carries_metadata_and_names_a_bad_row(tmp_path):
    root = write_isic_csvs(tmp_path, [("ISIC_1", "NV", ""), ("ISIC_2", "MEL", "")])
    labels = read_labels(root)
    assert (
        labels[list(FIELDS)].to_dict("records")
        == [{"age_approx": "45", "anatom_site_general": "anterior torso", "sex": "female"}] * 2
    )
    path = root / METADATA_CSV
    path.write_bytes(path.read_bytes().replace(b"ISIC_2,45,", b"ISIC_2,450,"))
    with pytest.raises(DataError, match=rf"^{path}: line 3 \(ISIC_2\): age_approx '450' is not an age"):
        read_labels(root)


def test_the_official_metadata_file_parses_with_its_gaps(shared_data):
    labels = read_labels(shared_data / "isic2019-labels")
    missing = (labels[list(FIELDS)] == "").sum().to_dict()
    assert missing["anatom_site_general"] == 2631 and missing["sex"] == 384
    assert set(labels["anatom_site_general"]) - {""} <= set(SITES)


def _fusion(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("densenet121", len(CLASSES), "none", len(FEATURES)).eval()


def test_the_fusion_model_uses_metadata_and_round_trips_through_its_file(tmp_path):
    model = _fusion()
    images = torch.rand(2, 3, 32, 32)
    known = torch.from_numpy(encode_metadata(_frame(("a", "70", "head/neck", "male")), "m")).repeat(2, 1)
    unknown = torch.from_numpy(missing_metadata(2))
    with torch.no_grad():
        assert not torch.allclose(model(images, known), model(images, unknown))
    save_checkpoint(tmp_path / "model.pt", model, model_info(metadata=list(FEATURES)))
    loaded, info = load_checkpoint(tmp_path / "model.pt")
    assert isinstance(loaded, MetadataFusion) and info.metadata == FEATURES and info.uses_metadata
    with torch.no_grad():
        assert torch.equal(loaded(images, known), model(images, known))
        assert log_probabilities(loaded, images, "dihedral", 1.0, known).exp().sum(1) == pytest.approx(1, abs=1e-5)


def test_a_model_file_with_another_metadata_encoding_is_refused(tmp_path):
    save_checkpoint(tmp_path / "model.pt", _fusion(), model_info(metadata=["age", "sex"]))
    with pytest.raises(Exception, match="encodes metadata as \\['age', 'sex'\\]"):
        load_checkpoint(tmp_path / "model.pt")


def test_gradcam_explains_the_image_part_of_a_fusion_model():
    model = _fusion()
    images, metadata = torch.rand(2, 3, 64, 64), torch.from_numpy(missing_metadata(2))
    with GradCAM(model, cam_layer(model)) as gradcam:
        cams, probabilities = gradcam(images, metadata=metadata)
    assert cams.shape == (2, 64, 64) and cams.min() >= 0 and cams.max() <= 1
    assert torch.allclose(probabilities, torch.softmax(model(images, metadata), 1), atol=1e-6)


@pytest.fixture
def fusion_file(tmp_path):
    save_checkpoint(tmp_path / "model.pt", _fusion(), model_info(metadata=list(FEATURES)))
    rng = np.random.default_rng(0)
    for name in ("ISIC_A", "ISIC_B"):
        Image.fromarray(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)).save(tmp_path / f"{name}.jpg")
    return tmp_path


def _predict(cli, folder, *options):
    images = [str(folder / "ISIC_A.jpg"), str(folder / "ISIC_B.jpg")]
    return cli("predict", *images, "--model", str(folder / "model.pt"), "--json", "--top", "8", *options, cwd=folder)


def _probabilities(result) -> list[dict]:
    return [{p["class"]: p["probability"] for p in item["predictions"]} for item in json.loads(result.stdout)]


def test_predict_without_metadata_treats_it_as_missing_and_says_so(cli, fusion_file):
    result = _predict(cli, fusion_file)
    assert result.returncode == 0, result.stderr
    assert "none were given" in result.stderr and "all treated as missing" in result.stderr
    report = json.loads(result.stdout)
    assert [item["metadata"] for item in report] == [dict.fromkeys(FIELDS, "")] * 2


def test_predict_reads_a_metadata_file_and_options(cli, fusion_file):
    table = fusion_file / "metadata.csv"
    table.write_text("image,age_approx,anatom_site_general,lesion_id,sex\nISIC_A,70.0,head/neck,,male\n")
    from_file = _predict(cli, fusion_file, "--metadata", str(table))
    assert from_file.returncode == 0, from_file.stderr
    assert "no row for 1 of the images (ISIC_B)" in from_file.stderr
    report = json.loads(from_file.stdout)
    assert report[0]["metadata"] == {"age_approx": "70", "anatom_site_general": "head/neck", "sex": "male"}
    assert report[1]["metadata"] == dict.fromkeys(FIELDS, "")
    by_option = _predict(cli, fusion_file, "--age", "70", "--site", "head/neck", "--sex", "male")
    missing = _predict(cli, fusion_file)
    assert _probabilities(by_option)[0] == _probabilities(from_file)[0]  # the same values, however given
    assert _probabilities(from_file)[1] == _probabilities(missing)[1]
    assert _probabilities(from_file)[0] != _probabilities(missing)[0]


def test_predict_names_bad_metadata(cli, fusion_file):
    result = _predict(cli, fusion_file, "--age", "200")
    assert result.returncode == 2 and "--age/--sex/--site: age_approx '200' is not an age" in result.stderr
    table = fusion_file / "metadata.csv"
    table.write_text("image,age_approx,anatom_site_general,sex\nISIC_A,40,knee,male\n")
    result = _predict(cli, fusion_file, "--metadata", str(table))
    assert result.returncode == 2 and f"{table}: line 2 (ISIC_A): anatom_site_general 'knee'" in result.stderr
    result = _predict(cli, fusion_file, "--metadata", str(table), "--sex", "male")
    assert result.returncode == 2 and "not both" in result.stderr
