"""skinlesion export --format onnx: one graph for a single model or a fold ensemble, run by ONNX
Runtime with the probabilities torch gives, and predict through it without importing torch."""

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from conftest import REPO, model_info

from skinlesion.cli import main as skinlesion
from skinlesion.data.images import load_image
from skinlesion.data.metadata import FEATURES, encode_metadata
from skinlesion.model.architectures import build_model
from skinlesion.model.checkpoint import load_checkpoint
from skinlesion.model.inference import tta_views as torch_tta_views
from skinlesion.model.model_file import read_checkpoint, save_checkpoint, save_ensemble
from skinlesion.predict.onnx_classifier import INFO_KEY, OnnxClassifier, tta_views
from skinlesion.predict.torch_classifier import TorchClassifier

SIZE = 32  # DenseNet121 at 32 px: the smallest input it pools to one pixel, and a quick export
CPU = torch.device("cpu")
# the ensemble's members: the graph around them is what that test is about, and ResNet50
# exports in half DenseNet121's time (the single-model test exports DenseNet121)
ENSEMBLE_ARCH = "resnet50"


def _run(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_:
        skinlesion(args)
    return exit_.value.code


@pytest.fixture(scope="module")
def real_images(shared_data):
    """12 real dermoscopy images (files, decoded at SIZE px, their metadata rows)."""
    root = shared_data / "isic2019-mini"
    files = sorted((root / "ISIC_2019_Training_Input").glob("*.jpg"))[:12]
    table = pd.read_csv(root / "ISIC_2019_Training_Metadata.csv", dtype=str, keep_default_na=False)
    rows = table.set_index("image").loc[[file.stem for file in files]].reset_index()
    return files, [load_image(file, SIZE) for file in files], rows


def _model(seed: int, metadata: bool = False, arch: str = "densenet121") -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(arch, 8, "none", len(FEATURES) if metadata else 0).eval()


def _agree(path, onnx_path, images, metadata=None, tta="none") -> float:
    """The largest difference between torch's and ONNX Runtime's probabilities of `images`."""
    model, info = load_checkpoint(path)
    by_torch = TorchClassifier(model, info, CPU, tta)(images, ["x"] * len(images), metadata)
    by_onnx = OnnxClassifier(onnx_path, device="cpu", tta=tta)(images, ["x"] * len(images), metadata)
    return float(np.abs(by_torch - by_onnx).max())


def test_a_single_model_exports_and_predict_runs_it_without_torch(tmp_path, real_images):
    files, images, _ = real_images
    path, exported = tmp_path / "model.pt", tmp_path / "exported" / "model.onnx"
    info = model_info(image_size=SIZE, temperature=1.7, unknown_threshold=0.4)
    save_checkpoint(path, _model(0), info)
    assert _run(["export", "--format", "onnx", "--model", str(path), "--out", str(exported)]) == 0

    # the preprocessing and the model travel in the file's metadata
    stored = {prop.key: prop.value for prop in onnx.load(exported, load_external_data=False).metadata_props}
    assert json.loads(stored["classes"]) == list(info.classes) and stored["input_size"] == str(SIZE)
    assert json.loads(stored["mean"]) == list(info.mean) and json.loads(stored["std"]) == list(info.std)
    assert json.loads(stored["unknown_threshold"]) == 0.4 and json.loads(stored["temperatures"]) == [1.7]
    assert OnnxClassifier(exported).info == load_checkpoint(path)[1]
    assert INFO_KEY in stored and "metadata_features" not in stored

    # the same probabilities on real images, with every TTA; a dynamic batch (12, then 5)
    for tta in ("none", "flips", "dihedral"):
        assert _agree(path, exported, images, tta=tta) < 1e-4
    assert _agree(path, exported, images[:5]) < 1e-4

    # predict through the export: the rows of predict through torch, and no torch imported
    common = ["predict", *map(str, files), "--batch-size", "5", "--tta", "flips"]
    code = (
        "import sys; from skinlesion.cli import main\n"
        "try: main(sys.argv[1:])\n"
        "except SystemExit as exit_: assert 'torch' not in sys.modules, 'torch imported'; sys.exit(exit_.code)"
    )
    by_onnx = tmp_path / "onnx.csv"
    run = subprocess.run(
        [sys.executable, "-c", code, *common, "--model", str(exported), "--out", str(by_onnx), "--isic-submission",
         str(tmp_path / "submission.csv")],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert _run([*common, "--model", str(path), "--out", str(tmp_path / "torch.csv")]) == 0
    onnx_rows, torch_rows = pd.read_csv(by_onnx), pd.read_csv(tmp_path / "torch.csv")
    columns = [f"p_{name}" for name in info.classes]
    assert (onnx_rows["predicted"] == torch_rows["predicted"]).all()
    assert np.abs(onnx_rows[columns].to_numpy() - torch_rows[columns].to_numpy()).max() <= 2e-6  # 6 places
    assert len(pd.read_csv(tmp_path / "submission.csv")) == len(files)


def test_a_fold_ensemble_with_metadata_is_one_graph_with_each_temperature(tmp_path, real_images):
    _, images, rows = real_images
    temperatures = (0.8, 2.5)
    members = []
    for fold, temperature in enumerate(temperatures):
        save_checkpoint(tmp_path / f"{fold}.pt", _model(fold, metadata=True, arch=ENSEMBLE_ARCH), _member(temperature))
        members.append(read_checkpoint(tmp_path / f"{fold}.pt"))
    infos = tuple(_member(temperature) for temperature in temperatures)
    path, exported = tmp_path / "model.pt", tmp_path / "model.onnx"
    ensemble = model_info(arch=ENSEMBLE_ARCH, image_size=SIZE, metadata=FEATURES, unknown_threshold=0.5, members=infos)
    save_ensemble(path, members, ensemble)
    assert _run(["export", "--model", str(path)]) == 0  # --out: beside the model

    stored = {prop.key: prop.value for prop in onnx.load(exported, load_external_data=False).metadata_props}
    assert json.loads(stored["metadata_features"]) == list(FEATURES) and "missing flag" in stored["metadata_encoding"]
    assert json.loads(stored["temperatures"]) == list(temperatures) and "2 fold models" in stored["output"]
    assert OnnxClassifier(exported).info.members == infos
    metadata = encode_metadata(rows, "metadata")
    assert _agree(path, exported, images, metadata) < 1e-4
    assert _agree(path, exported, images, metadata, tta="dihedral") < 1e-4
    # the metadata is an input of the graph: other metadata, other probabilities
    other = encode_metadata(rows.assign(age_approx="", sex="", anatom_site_general=""), "metadata")
    onnx_model = OnnxClassifier(exported)
    assert np.abs(onnx_model(images, [""] * 12, metadata) - onnx_model(images, [""] * 12, other)).max() > 1e-3


def _member(temperature: float):
    return model_info(arch=ENSEMBLE_ARCH, image_size=SIZE, metadata=FEATURES, temperature=temperature)


def test_tta_views_in_numpy_are_torchs_view_for_view():
    images = np.random.default_rng(0).normal(size=(2, 3, 5, 5)).astype(np.float32)
    for tta in ("none", "flips", "dihedral"):
        views, expected = tta_views(images, tta), torch_tta_views(torch.from_numpy(images), tta)
        assert len(views) == len(expected)
        assert all(np.array_equal(view, torch_view.numpy()) for view, torch_view in zip(views, expected))


def test_what_cannot_run_is_named(tmp_path, capsys, monkeypatch):
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_text("not a graph")
    assert _run(["predict", str(image), "--model", str(not_onnx)]) == 2
    assert f"{not_onnx}: not a loadable ONNX model" in capsys.readouterr().err

    foreign = tmp_path / "foreign.onnx"  # a valid graph that skinlesion export did not write
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    value = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([node], "g", [value], [onnx.helper.make_tensor_value_info("y", 1, [1])])
    onnx.save_model(onnx.helper.make_model(graph), foreign)
    assert _run(["predict", str(image), "--model", str(foreign)]) == 2
    assert f"{foreign}: an ONNX model, but not one that skinlesion export wrote" in capsys.readouterr().err

    assert _run(["predict", str(image), "--model", str(foreign), "--cam", str(tmp_path / "cams")]) == 2
    assert "--cam: Grad-CAM needs the model file of torch" in capsys.readouterr().err
    assert _run(["predict", str(image), "--model", str(tmp_path / "absent.onnx")]) == 2
    assert "absent.onnx: model file not found" in capsys.readouterr().err

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the extra were not installed
    assert _run(["predict", str(image), "--model", str(foreign)]) == 2
    assert "needs ONNX Runtime, which is not installed" in (err := capsys.readouterr().err)
    assert 'pip install -e ".[onnx]"' in err
    assert _run(["export", "--model", str(tmp_path / "model.pt")]) == 2
    assert "skinlesion export --format onnx needs ONNX Runtime" in capsys.readouterr().err
