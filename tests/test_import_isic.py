import shutil

import pytest

from skinlesion.data.official import verify_labels
from skinlesion.errors import DataError


def test_official_csvs_pass_and_an_edited_one_is_named(tmp_path, shared_data):
    for name in ("ISIC_2019_Training_GroundTruth.csv", "ISIC_2019_Training_Metadata.csv"):
        shutil.copy(shared_data / "isic2019-labels" / name, tmp_path / name)
    verify_labels(tmp_path)
    path = tmp_path / "ISIC_2019_Training_Metadata.csv"
    path.write_bytes(path.read_bytes().replace(b"anterior torso", b"anterior  torso", 1))
    with pytest.raises(
        DataError,
        match=r"ISIC_2019_Training_Metadata.csv: md5 \w+ is not that of the official ISIC 2019 file "
        r"\(8ca5fdef200ffd8579f48c823b504f7e\)",
    ):
        verify_labels(tmp_path)
