"""Cross-validation folds: the dealing, the params, the images a fold reads, and the ensemble."""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, model_info, write_params
from torch.utils.data import DataLoader, TensorDataset

from skinlesion.classes import CLASSES
from skinlesion.config import ParamsError, load_params
from skinlesion.data.arrays import ImageWriter, ManifestImages
from skinlesion.data.assign_folds import CvRun, assign_folds, fold_table
from skinlesion.data.folds import NO_FOLD, fold_manifests
from skinlesion.errors import DataError
from skinlesion.evaluation.gradcam import class_maps
from skinlesion.model.architectures import build_model
from skinlesion.model.checkpoint import load_checkpoint
from skinlesion.model.ensemble import FoldEnsemble, fold_predictions
from skinlesion.model.inference import log_probabilities, mean_probability, predict
from skinlesion.model.model_file import read_checkpoint, save_checkpoint, save_ensemble


def _pool(lesions_per_class: dict[str, int], images_per_lesion: int = 2, seed: int = 0) -> pd.DataFrame:
    """Manifest rows of train then val: `images_per_lesion` images of each lesion."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, lesions in lesions_per_class.items():
        for lesion in range(lesions):
            for image in range(images_per_lesion):
                rows.append({"image": f"{label}_{lesion}_{image}", "label": label, "lesion_id": f"{label}_{lesion}"})
    pool = pd.DataFrame(rows)
    pool["split"] = np.where(rng.random(len(pool)) < 0.8, "train", "val")
    pool = pd.concat([pool[pool["split"] == "train"], pool[pool["split"] == "val"]], ignore_index=True)
    pool["row"] = pool.groupby("split").cumcount()
    return pool


def test_the_folds_param_lists_the_folds_from_zero(tmp_path):
    for folds in ([0], [0, 1, 2, 3, 4]):
        assert load_params(CvRun, write_params(tmp_path, {"cv": {"folds": folds}})).cv.folds == tuple(folds)
    for folds in (5, [], [1, 2], [0, 2]):
        with pytest.raises(ParamsError, match=r"^params: cv\.folds: list the folds from 0: \[0\] for the single"):
            load_params(CvRun, write_params(tmp_path, {"cv": {"folds": folds}}))
    assert load_params(CvRun, REPO / "params.yaml").cv.folds == (0,)  # the published single split by default


def test_one_fold_is_the_published_split():
    pool = _pool(dict.fromkeys(CLASSES, 4))
    folds = assign_folds(pool, 1, seed=0, where="here")
    assert (folds[pool["split"] == "val"] == 0).all() and (folds[pool["split"] == "train"] == NO_FOLD).all()
    train, val = fold_manifests(pool.assign(fold=folds), 0, "here")
    assert train.equals(pool[pool["split"] == "train"].reset_index(drop=True))
    assert val.equals(pool[pool["split"] == "val"].reset_index(drop=True))


def test_folds_keep_lesions_whole_and_each_validates_on_every_class():
    pool = _pool({"NV": 40, "MEL": 12, "BCC": 9, "AK": 7, "BKL": 8, "DF": 5, "VASC": 5, "SCC": 6})
    table = fold_table(pool[pool["split"] == "train"], pool[pool["split"] == "val"], 5, seed=3, where="here")
    assert table["fold"].between(0, 4).all()
    assert (table.groupby("lesion_id")["fold"].nunique() == 1).all()  # no lesion in two folds
    for fold in range(5):
        train, val = fold_manifests(table, fold, "here")
        assert set(val["label"]) == set(CLASSES)
        assert not set(train["lesion_id"]) & set(val["lesion_id"])
        assert len(train) + len(val) == len(pool)
    sizes = table["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 0.15 * len(pool)
    again = fold_table(pool[pool["split"] == "train"], pool[pool["split"] == "val"], 5, seed=3, where="here")
    assert again.equals(table)  # deterministic for the seed


def test_more_folds_than_a_class_has_lesions_is_an_error_naming_the_class():
    pool = _pool({"NV": 10, "MEL": 6, "DF": 3})
    with pytest.raises(DataError) as caught:
        assign_folds(pool, 4, seed=0, where="data/prepared/train.csv and val.csv")
    assert str(caught.value) == (
        "params: cv.folds: 4 folds, but class DF has only 3 lesion(s) in train+val (data/prepared/train.csv and "
        "val.csv): every fold must validate on every class; use at most 3 folds"
    )


def test_a_fold_the_table_lacks_is_named():
    table = _pool({"NV": 4}).assign(fold=0)
    with pytest.raises(DataError, match=r"^folds.csv: no rows of fold 3 \(its folds: \[0\]\)$"):
        fold_manifests(table, 3, "folds.csv")
    with pytest.raises(DataError, match="not a fold table"):
        fold_manifests(table.drop(columns="fold"), 0, "folds.csv")


def test_a_manifest_reads_its_rows_from_each_splits_array(tmp_path):
    arrays = {}
    for split, count in (("train", 3), ("val", 2)):
        arrays[split] = np.random.default_rng(len(split)).integers(0, 256, (count, 8, 8, 3), dtype=np.uint8)
        with ImageWriter(tmp_path / f"{split}.npy", count, 8) as writer:
            for row, pixels in enumerate(arrays[split]):
                writer.write(row, pixels)
    manifest = pd.DataFrame({"split": ["val", "train", "val", "train"], "row": [1, 2, 0, 2]})
    images = ManifestImages(tmp_path, manifest)
    expected = np.stack([arrays[split][row] for split, row in zip(manifest["split"], manifest["row"])])
    assert images.shape == (4, 8, 8, 3) and len(images) == 4
    assert np.array_equal(images[np.arange(4)], expected)
    assert np.array_equal(images[np.array([3, 0]), :4, :4], expected[[3, 0], :4, :4])
    assert np.array_equal(images[2], arrays["val"][0])
    copy = pickle.loads(pickle.dumps(images))  # a DataLoader worker's copy: paths, not pixels
    assert copy._arrays == {} and np.array_equal(copy[1], arrays["train"][2])


def _model_file(path, seed: int, temperature: float):
    torch.manual_seed(seed)
    model = build_model("densenet121", len(CLASSES), "none")
    save_checkpoint(path, model, model_info(temperature=temperature, image_size=32))
    return model.eval()


def test_an_ensemble_file_loads_as_the_mean_of_its_fold_models_probabilities(tmp_path):
    members = [_model_file(tmp_path / f"{k}.pt", seed=k, temperature=1.0 + k) for k in range(3)]
    members_read = [read_checkpoint(tmp_path / f"{k}.pt") for k in range(3)]
    save_ensemble(tmp_path / "model.pt", members_read, model_info(epoch=None, out_of_fold={}))
    ensemble, info = load_checkpoint(tmp_path / "model.pt", CLASSES)
    assert isinstance(ensemble, FoldEnsemble) and len(info.members) == 3 and info.is_ensemble
    assert [member.temperature for member in info.members] == [1.0, 2.0, 3.0]
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = torch.stack(
            [log_probabilities(member, images, temperature=1.0 + k).exp() for k, member in enumerate(members)]
        ).mean(dim=0)
        probabilities = log_probabilities(ensemble, images, tta="flips").exp()
        plain = log_probabilities(ensemble, images).exp()
    assert torch.allclose(plain, expected, atol=1e-6)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(2), atol=1e-5)
    targets = plain.argmax(dim=1)
    maps = class_maps(ensemble, images, targets)
    assert torch.allclose(maps, torch.stack([class_maps(member, images, targets) for member in members]).mean(0))


def test_evaluate_runs_each_fold_model_once_and_averages_as_the_ensemble_does(tmp_path):
    members = [_model_file(tmp_path / f"{k}.pt", seed=k, temperature=1.0 + k) for k in range(3)]
    ensemble = FoldEnsemble(members, [1.0, 2.0, 3.0]).eval()
    labels = torch.tensor([0, 3, 5, 7, 1])
    loader = DataLoader(TensorDataset(torch.randn(5, 3, 32, 32), labels), batch_size=2)
    folds_logs, y_true = fold_predictions(ensemble, loader, torch.device("cpu"), "flips")
    expected, expected_true, _ = predict(ensemble, loader, torch.device("cpu"), "flips")
    assert len(folds_logs) == 3 and (y_true == labels.numpy()).all() and (expected_true == y_true).all()
    assert np.allclose(mean_probability(torch.from_numpy(folds_logs)).numpy(), expected, atol=1e-5)
    alone, _, _ = predict(members[2], loader, torch.device("cpu"), "flips", temperature=3.0)
    assert np.array_equal(folds_logs[2], alone)
