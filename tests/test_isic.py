import hashlib

import numpy as np
import pytest
from conftest import write_isic_csvs
from PIL import Image

from skinlesion.classes import CLASSES
from skinlesion.data.images import load_image
from skinlesion.data.isic import read_labels
from skinlesion.errors import DataError

ROWS = [
    ("ISIC_0000001", "NV", "IL_1"),
    ("ISIC_0000002", "NV", "IL_1"),
    ("ISIC_0000003", "MEL", ""),
    ("ISIC_0000004_downsampled", "DF", "IL_2"),
]


def test_reads_labels_lesions_and_groups(tmp_path):
    labels = read_labels(write_isic_csvs(tmp_path, ROWS))
    assert list(labels["image"]) == [r[0] for r in ROWS]
    assert list(labels["label"]) == ["NV", "NV", "MEL", "DF"]
    assert list(labels["lesion_id"]) == ["IL_1", "IL_1", "", "IL_2"]
    # a row without a lesion id is a group of its own
    assert list(labels["group"]) == ["IL_1", "IL_1", "ISIC_0000003", "IL_2"]


def _edit_truth(root, old, new):
    path = root / "ISIC_2019_Training_GroundTruth.csv"
    path.write_bytes(path.read_bytes().replace(old.encode(), new.encode()))


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("ISIC_0000003,1.0,0.0", "ISIC_0000003,1.0,1.0", r"line 4 \(ISIC_0000003\): labels must be one-hot"),
        ("ISIC_0000003,1.0,0.0", "ISIC_0000003,0.0,0.0", r"line 4 \(ISIC_0000003\): labels must be one-hot"),
        ("ISIC_0000003,1.0,0.0", "ISIC_0000003,yes,0.0", r"line 4 \(ISIC_0000003\): column MEL is 'yes', not a number"),
        ("ISIC_0000002,", "ISIC_0000001,", r"image 'ISIC_0000001' appears more than once \(lines \[2, 3\]\)"),
        ("image,MEL", "img,MEL", "the first column must be 'image'"),
        ("ISIC_0000003,1.0,0.0", " ,1.0,0.0", "line 4 has no image name"),
        ("UNK\r\n", "UNK,notes\r\n", r"line 2 has 10 fields, the header 11"),
        ("SCC,UNK\r\n", "UNK,SCC\r\n", r"UNK only last, found .*'UNK', 'SCC'\]"),
        (",SCC,UNK", ",UNK", r"line 2 has 10 fields, the header 9"),
        ("ISIC_0000003,1.0,0.0", "ISIC_0000003,1.0", r"line 4 has 9 fields, the header 10"),
    ],
)
def test_bad_ground_truth_names_file_and_line(tmp_path, old, new, message):
    root = write_isic_csvs(tmp_path, ROWS)
    _edit_truth(root, old, new)
    with pytest.raises(DataError, match=message) as error:
        read_labels(root)
    assert "ISIC_2019_Training_GroundTruth.csv" in str(error.value)


def test_unk_label_is_refused(tmp_path):
    root = write_isic_csvs(tmp_path, ROWS)
    _edit_truth(
        root, "ISIC_0000003,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0", "ISIC_0000003,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,1.0"
    )
    with pytest.raises(DataError, match="class UNK is not one of the training classes"):
        read_labels(root)


def test_metadata_must_cover_every_image(tmp_path):
    root = write_isic_csvs(tmp_path, ROWS)
    meta = root / "ISIC_2019_Training_Metadata.csv"
    meta.write_text("\n".join(line for line in meta.read_text().splitlines() if "ISIC_0000003" not in line))
    with pytest.raises(DataError, match="no row for image 'ISIC_0000003'"):
        read_labels(root)


def test_lesion_with_two_classes_is_refused(tmp_path):
    root = write_isic_csvs(tmp_path, [("ISIC_1", "NV", "IL_9"), ("ISIC_2", "MEL", "IL_9")])
    with pytest.raises(DataError, match=r"lesion 'IL_9' has images of several classes \['MEL', 'NV'\]"):
        read_labels(root)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="ISIC_2019_Training_GroundTruth.csv: file not found"):
        read_labels(tmp_path)


def test_byte_order_mark_is_accepted(tmp_path):
    root = write_isic_csvs(tmp_path, ROWS)
    path = root / "ISIC_2019_Training_GroundTruth.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert len(read_labels(root)) == 4


def test_load_image_resizes_and_converts(tmp_path):
    gray = tmp_path / "gray.jpg"
    Image.fromarray(np.full((45, 60), 128, np.uint8)).save(gray)
    pixels = load_image(gray, 32)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    assert abs(int(pixels.mean()) - 128) <= 2


def test_real_isic_2019_labels(shared_data):
    """The official ground truth and metadata: counts and lesion facts from the shared README."""
    root = shared_data / "isic2019-labels"
    assert (
        hashlib.md5((root / "ISIC_2019_Training_GroundTruth.csv").read_bytes()).hexdigest()
        == "2c02bdcc6e7f36d355f4f86b210595ae"
    )
    labels = read_labels(root)
    assert len(labels) == 25331
    counts = labels["label"].value_counts().to_dict()
    assert counts == {"MEL": 4522, "NV": 12875, "BCC": 3323, "AK": 867, "BKL": 2624, "DF": 239, "VASC": 253, "SCC": 628}
    assert set(labels["label"]) <= set(CLASSES)
    assert (labels["lesion_id"] != "").sum() == 23247
    assert labels.loc[labels["lesion_id"] != "", "lesion_id"].nunique() == 11847
    assert labels["image"].str.endswith("_downsampled").sum() == 2074
