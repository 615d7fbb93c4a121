import numpy as np
import pandas as pd
import pytest

from skinlesion.classes import CLASSES
from skinlesion.data.arrays import ImageWriter, copy_rows, open_images, read_manifest
from skinlesion.errors import DataError


def test_writer_makes_a_npy_file_that_numpy_reads(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    with ImageWriter(tmp_path / "a.npy", 6, 8) as writer:
        for row in (3, 0, 4, 1, 2):  # any order
            writer.write(row, images[row])
        with pytest.raises(ValueError, match=r"expected a \(8, 8, 3\) uint8 image"):
            writer.write(5, images[0][:4])
    loaded = open_images(tmp_path / "a.npy")
    assert loaded.shape == (6, 8, 8, 3)
    assert np.array_equal(loaded[:5], images) and not loaded[5].any()  # unwritten row: zeros
    copy_rows(loaded, np.array([4, 0]), tmp_path / "b.npy")
    assert np.array_equal(np.load(tmp_path / "b.npy"), images[[4, 0]])


def test_open_images_and_read_manifest_refuse_wrong_files(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((3, 4), np.uint8))
    with pytest.raises(DataError, match=r"flat.npy: expected a \(N, H, W, 3\) uint8 array"):
        open_images(tmp_path / "flat.npy")
    pd.DataFrame({"image": ["a"], "label": ["MELANOMA"], "lesion_id": [""], "split": ["train"], "row": [0]}).to_csv(
        tmp_path / "m.csv", index=False
    )
    with pytest.raises(DataError, match=r"m.csv: label 'MELANOMA' is not one of the classes \['MEL',"):
        read_manifest(tmp_path / "m.csv", CLASSES)
    pd.DataFrame({"image": ["a"]}).to_csv(tmp_path / "n.csv", index=False)
    with pytest.raises(DataError, match="n.csv: missing columns"):
        read_manifest(tmp_path / "n.csv")
