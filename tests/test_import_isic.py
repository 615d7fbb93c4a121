import io
import shutil
import zipfile

import numpy as np
import pytest
from conftest import run_cli, run_command, run_dvc, serve_folder
from PIL import Image

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


@pytest.fixture
def test_set_server(tmp_path):
    """A local HTTP server with a small test set in the official layout: the image zip and the
    metadata CSV, but no ground truth (a 404 for it, as before the challenge publishes one)."""
    served = tmp_path / "served"
    served.mkdir()
    with zipfile.ZipFile(served / "ISIC_2019_Test_Input.zip", "w") as archive:
        for i in range(3):
            image = io.BytesIO()
            Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(image, format="JPEG")
            archive.writestr(f"ISIC_2019_Test_Input/ISIC_{i:07d}.jpg", image.getvalue())
    rows = "".join(f"ISIC_{i:07d},{40 + i},head/neck,female\r\n" for i in range(3))
    (served / "ISIC_2019_Test_Metadata.csv").write_text("image,age_approx,anatom_site_general,sex\r\n" + rows)
    with serve_folder(served) as url:
        yield url


def test_import_of_the_test_set_without_a_published_ground_truth(tmp_path, test_set_server):
    repo = tmp_path / "repo"
    repo.mkdir()
    run_command("git", "init", "-q", cwd=repo)
    run_dvc("init", "-q", cwd=repo)
    result = run_cli("import-isic", "--test", "--base-url", test_set_server, cwd=repo)
    assert result.returncode == 0, result.stderr
    out = repo / "data" / "isic2019-test"
    for name in ("ISIC_2019_Test_Input.zip", "ISIC_2019_Test_Metadata.csv"):
        assert (out / f"{name}.dvc").is_file() and (out / name).is_file(), name
    assert not (out / "ISIC_2019_Test_GroundTruth.csv.dvc").exists()
    assert "ISIC_2019_Test_GroundTruth.csv could not be imported" in result.stderr
    with zipfile.ZipFile(out / "ISIC_2019_Test_Input.zip") as archive:
        assert len(archive.namelist()) == 3
