"""Cross-validation's figures (skinlesion.evaluation.cv) on small literal fixtures: the fold
models' check and out-of-fold estimate that the ensemble stage writes, every fold's curves,
and each fold model's test figures that evaluate reports."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import model_info
from sklearn.metrics import balanced_accuracy_score

from skinlesion.classes import CLASSES
from skinlesion.data.arrays import ImageWriter
from skinlesion.errors import DataError
from skinlesion.evaluation.cv import combine_folds, cross_validation, out_of_fold_figures, shared_info
from skinlesion.evaluation.fold_outputs import fold_curves, fold_model_files
from skinlesion.model.architectures import build_model
from skinlesion.model.checkpoint import load_checkpoint, predict_rows
from skinlesion.model.info import SHARED
from skinlesion.model.model_file import save_checkpoint
from skinlesion.model.unknown import unknown_scores

CPU = torch.device("cpu")


def _one_hot_probabilities(predicted: list[int], confidence: list[float]) -> np.ndarray:
    """(N, 8) probabilities: `confidence` on the predicted class, the rest spread evenly."""
    rows = np.tile((1 - np.asarray(confidence))[:, None] / 7, (1, len(CLASSES)))
    rows[np.arange(len(predicted)), predicted] = confidence
    return rows


def test_fold_model_files_name_the_folds_not_yet_trained(tmp_path):
    for fold in (0, 2):
        (tmp_path / str(fold)).mkdir()
        (tmp_path / str(fold) / "model.pt").write_bytes(b"")
    assert fold_model_files(tmp_path, [0, 2]) == [tmp_path / "0" / "model.pt", tmp_path / "2" / "model.pt"]
    with pytest.raises(DataError, match=rf"fold models not found: \['{tmp_path / '1' / 'model.pt'}'\] \(run dvc"):
        fold_model_files(tmp_path, [0, 1, 2])


def test_fold_models_must_share_their_preprocessing_to_be_averaged():
    files = ["folds/0/model.pt", "folds/1/model.pt"]
    same = [model_info(epoch=3), model_info(epoch=5)]  # other epochs are fine
    shared = shared_info(same, files)
    assert shared == {key: getattr(model_info(), key) for key in SHARED}
    other_size = [model_info(), model_info(image_size=128)]
    sizes = r"\{'folds/0/model.pt': 64, 'folds/1/model.pt': 128\}"
    with pytest.raises(DataError, match=rf"differ in image_size \({sizes}\): retrain them"):
        shared_info(other_size, files)
    with pytest.raises(DataError, match="differ in metadata"):  # one fuses metadata, the other does not
        shared_info([model_info(), model_info(metadata=("age",))], files)


def test_the_out_of_fold_estimate_is_recomputed_from_its_predictions():
    y_true = np.array([0, 0, 1, 1, 1, 5, 5, 7])
    predicted = [0, 1, 1, 1, 0, 5, 0, 7]
    confidence = [0.9, 0.5, 0.8, 0.95, 0.4, 0.7, 0.3, 0.99]
    figures = out_of_fold_figures(_one_hot_probabilities(predicted, confidence), y_true)
    assert figures["images"] == 8
    assert figures["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, predicted))
    assert figures["accuracy"] == pytest.approx(5 / 8)
    # the threshold keeps 95% of these (known) images known: 8 images, so the 8th lowest score, 1 - 0.3
    assert figures["unknown_threshold"] == pytest.approx(0.7)


def test_every_folds_validation_curves_in_one_table(tmp_path):
    for fold, values in ((0, [0.2, 0.4]), (1, [0.3, 0.1])):
        folder = tmp_path / str(fold) / "plots" / "metrics" / "val"
        folder.mkdir(parents=True)
        for name in ("balanced_accuracy", "loss", "accuracy"):
            scale = {"balanced_accuracy": 1, "loss": 10, "accuracy": 2}[name]
            rows = [f"{step}\t{value * scale}" for step, value in enumerate(values)]
            (folder / f"{name}.tsv").write_text("\n".join([f"step\t{name}", *rows]) + "\n")
    table = fold_curves(tmp_path, [0, 1])
    assert list(table.columns) == ["step", "fold", "balanced_accuracy", "loss", "accuracy"]
    assert table[["step", "fold"]].values.tolist() == [[0, 0], [1, 0], [0, 1], [1, 1]]
    assert table["balanced_accuracy"].tolist() == [0.2, 0.4, 0.3, 0.1]
    assert table["loss"].tolist() == pytest.approx([2.0, 4.0, 3.0, 1.0])


def test_each_fold_models_test_figures_their_mean_and_spread():
    y_true = np.array([0, 1, 2, 0, 1, 2])
    predictions = ([0, 1, 2, 0, 1, 2], [0, 1, 1, 0, 0, 2], [1, 1, 2, 2, 1, 0])
    folds_logs = np.log(np.stack([_one_hot_probabilities(p, [0.8] * 6) for p in predictions]))
    out_of_fold = {"images": 40, "balanced_accuracy": 0.5, "accuracy": 0.6}
    members = [model_info(epoch=k, val_balanced_accuracy=0.1 * k) for k in range(3)]
    info = model_info(epoch=None, val_balanced_accuracy=None, members=members, out_of_fold=out_of_fold)
    cv = cross_validation(folds_logs, y_true, info, bins=10).model_dump()  # as eval.json holds it
    expected = [balanced_accuracy_score(y_true, p) for p in predictions]
    assert [cv["folds"][str(k)]["test"]["balanced_accuracy"] for k in range(3)] == pytest.approx(expected)
    assert cv["folds"]["2"]["epoch"] == 2 and cv["folds"]["1"]["val_balanced_accuracy"] == pytest.approx(0.1)
    assert cv["test_mean"]["balanced_accuracy"] == pytest.approx(np.mean(expected))
    assert cv["test_std"]["balanced_accuracy"] == pytest.approx(np.std(expected, ddof=1))
    accuracies = [np.mean(np.array(p) == y_true) for p in predictions]
    assert cv["test_mean"]["accuracy"] == pytest.approx(np.mean(accuracies))
    assert cv["out_of_fold"] == out_of_fold  # measured by the ensemble stage, on train+val


def _fold_data(folder, rows_per_fold: int = 3):
    """A prepared folder with one train array of 2 * rows_per_fold images at 32 px and the
    fold table of two folds over them."""
    rng = np.random.default_rng(0)
    count = 2 * rows_per_fold
    with ImageWriter(folder / "train.npy", count, 32) as writer:
        for row in range(count):
            writer.write(row, rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    table = pd.DataFrame(
        {
            "image": [f"ISIC_{row}" for row in range(count)],
            "label": [CLASSES[row % 3] for row in range(count)],
            "lesion_id": "",
            "split": "train",
            "row": range(count),
            "fold": [row % 2 for row in range(count)],
        }
    )
    return table


def _fold_model(path, seed: int, **changes):
    torch.manual_seed(seed)
    save_checkpoint(path, build_model("densenet121", len(CLASSES), "none"), model_info(image_size=32, **changes))


def test_combine_folds_predicts_each_image_by_the_fold_that_validated_on_it(tmp_path):
    table = _fold_data(tmp_path)
    files = [tmp_path / "0.pt", tmp_path / "1.pt"]
    _fold_model(files[0], seed=0)
    _fold_model(files[1], seed=1, temperature=2.0)
    members, info = combine_folds(files, table, tmp_path, "folds.csv", CPU, batch_size=2)
    assert len(members) == 2 and info.image_size == 32 and not info.members  # members are stored with weights
    probabilities, labels = [], []
    for fold, path in enumerate(files):  # each fold model alone on its own validation rows
        model, model_info_ = load_checkpoint(path)
        validation = table[table["fold"] == fold].drop(columns="fold").reset_index(drop=True)
        logs, y_true, _ = predict_rows(model, model_info_, tmp_path, validation, "here", CPU, 4)
        probabilities.append(np.exp(logs))
        labels.append(y_true)
    expected = out_of_fold_figures(np.concatenate(probabilities), np.concatenate(labels))
    assert info.out_of_fold["images"] == len(table)
    assert info.out_of_fold["balanced_accuracy"] == pytest.approx(expected["balanced_accuracy"])
    assert info.unknown_threshold == pytest.approx(expected["unknown_threshold"])
    assert np.isclose(unknown_scores(np.concatenate(probabilities)), info.unknown_threshold).any()
    _fold_model(files[1], seed=1, crop_border=True)
    with pytest.raises(DataError, match="the fold models differ in crop_border"):
        combine_folds(files, table, tmp_path, "folds.csv", CPU, batch_size=2)
