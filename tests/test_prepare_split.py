import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from conftest import run_stage, write_params

from skinlesion.classes import CLASSES
from skinlesion.data.images import load_image
from skinlesion.data.isic import IMAGE_DIR, ImageSource
from skinlesion.data.metadata import FIELDS
from skinlesion.data.split import SPLITS
from skinlesion.data.synthetic import SampleParams, lesion_images, plan_sample, write_sample
from skinlesion.errors import DataError

SIZE = 32


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample") / "sample"
    write_sample(plan_sample(SampleParams(num_images=60, min_per_class=4, scale=0.1, seed=3)), 0.1, root)
    return root


def _prepare(tmp_path, data_root, skip=False):
    write_params(tmp_path, {"prepare": {"image_size": SIZE, "skip_bad_images": skip, "workers": 2}})
    return run_stage(
        "prepare_split",
        "--data-root",
        str(data_root),
        "--out",
        "prepared",
        "--metrics",
        "metrics/data.json",
        cwd=tmp_path,
    )


def test_prepare_split_writes_arrays_manifests_and_counts(tmp_path, sample_root):
    result = _prepare(tmp_path, sample_root)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "prepared"
    manifests = {name: pd.read_csv(out / f"{name}.csv", keep_default_na=False) for name in SPLITS}
    counts = json.loads((tmp_path / "metrics" / "data.json").read_text())
    assert sum(len(m) for m in manifests.values()) == 60 and counts["skipped"] == 0
    seen = {}
    for name, manifest in manifests.items():
        images = np.load(out / f"{name}.npy")
        assert images.shape == (len(manifest), SIZE, SIZE, 3) and images.dtype == np.uint8
        assert list(manifest.columns) == ["image", "label", "lesion_id", "split", "row", *FIELDS]
        assert (manifest["row"] == np.arange(len(manifest))).all() and (manifest["split"] == name).all()
        assert counts[name]["total"] == len(manifest)
        first = manifest.iloc[0]
        assert np.array_equal(images[0], load_image(sample_root / IMAGE_DIR / f"{first['image']}.jpg", SIZE))
        for lesion in manifest.loc[manifest["lesion_id"] != "", "lesion_id"]:
            assert seen.setdefault(lesion, name) == name  # no lesion in two splits


def test_corrupt_image_fails_naming_the_file_and_leaves_no_output(tmp_path, sample_root):
    data = tmp_path / "data"
    (data / IMAGE_DIR).mkdir(parents=True)
    for item in sample_root.iterdir():
        if item.is_file():
            (data / item.name).write_bytes(item.read_bytes())
    for jpg in (sample_root / IMAGE_DIR).iterdir():
        (data / IMAGE_DIR / jpg.name).write_bytes(jpg.read_bytes())
    victim = sorted((data / IMAGE_DIR).iterdir())[5]
    victim.write_bytes(victim.read_bytes()[:200])  # truncated JPEG
    missing = sorted((data / IMAGE_DIR).iterdir())[9]
    missing.unlink()

    result = _prepare(tmp_path, data)
    assert result.returncode != 0
    assert victim.name in result.stderr and "prepare.skip_bad_images" in result.stderr
    assert not (tmp_path / "prepared").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".prepared")]  # no temp folder left

    result = _prepare(tmp_path, data, skip=True)
    assert result.returncode == 0, result.stderr
    skipped = pd.read_csv(tmp_path / "prepared" / "skipped.csv")
    assert set(skipped["image"]) == {victim.stem, missing.stem}
    assert skipped.loc[skipped["image"] == missing.stem, "reason"].item() == "file not found"
    total = 0
    for name in SPLITS:
        manifest = pd.read_csv(tmp_path / "prepared" / f"{name}.csv")
        assert len(np.load(tmp_path / "prepared" / f"{name}.npy")) == len(manifest)
        assert not set(manifest["image"]) & set(skipped["image"])
        total += len(manifest)
    assert total == 58
    assert json.loads((tmp_path / "metrics" / "data.json").read_text())["skipped"] == 2


def test_make_sample_is_deterministic_and_isic_shaped(tmp_path, sample_root):
    again = tmp_path / "again"
    write_sample(plan_sample(SampleParams(num_images=60, min_per_class=4, scale=0.1, seed=3)), 0.1, again)
    for name in ("ISIC_2019_Training_GroundTruth.csv", "ISIC_2019_Training_Metadata.csv"):
        assert (again / name).read_bytes() == (sample_root / name).read_bytes()
    truth = (sample_root / "ISIC_2019_Training_GroundTruth.csv").read_bytes()
    assert truth.startswith(b"image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\r\n") and b",1.0," in truth
    first = sorted((sample_root / IMAGE_DIR).iterdir())[0]
    assert first.read_bytes() == (again / IMAGE_DIR / first.name).read_bytes()


def _zip_images(source_root, target_root, folder_inside="ISIC_2019_Training_Input/"):
    """Lay out `target_root` like the official download: the two CSVs beside the image zip."""
    target_root.mkdir(parents=True)
    for name in ("ISIC_2019_Training_GroundTruth.csv", "ISIC_2019_Training_Metadata.csv"):
        (target_root / name).write_bytes((source_root / name).read_bytes())
    with zipfile.ZipFile(target_root / "ISIC_2019_Training_Input.zip", "w") as archive:
        for jpg in sorted((source_root / IMAGE_DIR).glob("*.jpg")):
            archive.write(jpg, folder_inside + jpg.name)
    return target_root


def test_images_read_from_the_zip_equal_those_from_the_folder(tmp_path, sample_root):
    zipped = _zip_images(sample_root, tmp_path / "zipped")
    (tmp_path / "from_folder").mkdir()
    assert _prepare(tmp_path / "from_folder", sample_root).returncode == 0
    assert _prepare(tmp_path, zipped).returncode == 0
    for name in SPLITS:
        assert np.array_equal(
            np.load(tmp_path / "prepared" / f"{name}.npy"),
            np.load(tmp_path / "from_folder" / "prepared" / f"{name}.npy"),
        )


def test_image_missing_from_the_zip_is_named(tmp_path, sample_root):
    zipped = _zip_images(sample_root, tmp_path / "zipped")
    truth = zipped / "ISIC_2019_Training_GroundTruth.csv"
    meta = zipped / "ISIC_2019_Training_Metadata.csv"
    truth.write_bytes(truth.read_bytes() + b"ISIC_9999999,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0\r\n")
    meta.write_bytes(meta.read_bytes() + b"ISIC_9999999,50,head/neck,,male\r\n")
    result = _prepare(tmp_path, zipped)
    assert result.returncode != 0
    assert "ISIC_2019_Training_Input.zip:ISIC_9999999.jpg: file not found" in result.stderr


def test_data_root_without_images_is_refused(tmp_path):
    with pytest.raises(DataError, match="found neither ISIC_2019_Training_Input/ nor ISIC_2019_Training_Input.zip"):
        ImageSource(tmp_path)


def test_lesion_images_are_distinct_sized_and_repeatable():
    first = list(lesion_images(9, 48, seed=3))
    assert [label for label, _ in first] == [*CLASSES, CLASSES[0]]
    assert all(image.size == (48, 48) for _, image in first)
    arrays = [np.asarray(image) for _, image in first]
    assert len({array.tobytes() for array in arrays}) == 9
    assert all(np.array_equal(a, np.asarray(b)) for a, (_, b) in zip(arrays, lesion_images(9, 48, seed=3)))
