"""External test sets: decoded as prepare-split decodes, less what the pipeline's data holds (by
ISIC id, lesion id or pixels), and scored by evaluate-external as predict scores the files."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import copy_built, model_info, run_cli, run_dvc, run_stage, stages_run, write_isic_csvs, write_params

from skinlesion.classes import CLASSES, write_classes
from skinlesion.data.arrays import ImageWriter, open_images, read_manifest, write_manifest
from skinlesion.data.external import prepare_external
from skinlesion.data.images import load_image
from skinlesion.data.isic import IMAGE_DIR, METADATA_CSV
from skinlesion.data.prepare import PrepareParams
from skinlesion.data.split import SPLITS
from skinlesion.errors import DataError
from skinlesion.model.architectures import build_model
from skinlesion.model.model_file import save_checkpoint

SIZE = 32


def _params(**changes) -> PrepareParams:
    values = dict(
        image_size=SIZE,
        val_fraction=0.2,
        test_fraction=0.2,
        skip_bad_images=False,
        crop_border=False,
        color_constancy=False,
        workers=1,
        seed=0,
    )
    return PrepareParams(**(values | changes))


@pytest.fixture
def sets(tmp_path, shared_data):
    """prepare-split's folder holding 6 real images (2 per split, lesions L0..L5), and an
    external folder of 12 others plus: one of the prepared images (same id), an image of
    lesion L1, and a prepared image's copy under a new name."""
    files = sorted((shared_data / "isic2019-mini" / "ISIC_2019_Training_Input").glob("*.jpg"))
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    for k, split in enumerate(SPLITS):
        chosen = files[2 * k : 2 * k + 2]
        with ImageWriter(prepared / f"{split}.npy", 2, SIZE) as writer:
            for row, file in enumerate(chosen):
                writer.write(row, load_image(file, SIZE))
        manifest = pd.DataFrame(
            {
                "image": [file.stem for file in chosen],
                "label": ["NV", "MEL"],
                "lesion_id": [f"L{2 * k + row}" for row in range(2)],
                "split": split,
                "row": [0, 1],
            }
        )
        write_manifest(manifest, prepared / f"{split}.csv")
    write_classes(prepared, CLASSES)
    external = tmp_path / "external"
    (external / IMAGE_DIR).mkdir(parents=True)
    rows = []
    for k, file in enumerate(files[6:18]):
        shutil.copy(file, external / IMAGE_DIR / file.name)
        rows.append((file.stem, CLASSES[k % len(CLASSES)], f"X{k}"))
    shutil.copy(files[0], external / IMAGE_DIR / files[0].name)  # a training image: the same ISIC id
    rows.append((files[0].stem, "NV", "X90"))
    shutil.copy(files[20], external / IMAGE_DIR / files[20].name)  # another image of training lesion L1
    rows.append((files[20].stem, "MEL", "L1"))
    shutil.copy(files[4], external / IMAGE_DIR / "ISIC_9999999.jpg")  # a test image's copy under a new name
    rows.append(("ISIC_9999999", "BCC", "X91"))
    write_isic_csvs(external, rows)
    return prepared, external, files


def test_the_leakage_guard_leaves_out_and_counts_what_the_pipeline_holds(tmp_path, sets):
    prepared, external, files = sets
    out = tmp_path / "out"
    out.mkdir()
    summary = prepare_external(external, prepared, _params(), out)
    assert summary["images_in_folder"] == 15 and summary["images"] == 12 and summary["skipped"] == 0
    assert summary["overlap_excluded"] == {"isic_id": 1, "lesion_id": 1, "pixels": 2, "total": 3}
    excluded = pd.read_csv(out / "excluded.csv").set_index("image")["reason"].to_dict()
    assert excluded == {files[0].stem: "isic_id;pixels", files[20].stem: "lesion_id", "ISIC_9999999": "pixels"}
    manifest = read_manifest(out / "external.csv")
    assert list(manifest["image"]) == [file.stem for file in files[6:18]] and set(manifest["split"]) == {"external"}
    assert list(manifest["sex"]) == ["female"] * 12  # the metadata travels
    pixels = open_images(out / "external.npy")
    assert pixels.shape == (12, SIZE, SIZE, 3) and np.array_equal(pixels[3], load_image(files[9], SIZE))
    assert sorted(path.name for path in out.iterdir()) == [
        "excluded.csv",
        "external.csv",
        "external.npy",
        "summary.json",
    ]


def test_bad_external_sets_are_named(tmp_path, sets):
    prepared, external, _ = sets
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError, match="external test set folder not found"):
        prepare_external(tmp_path / "absent", prepared, _params(), out)
    (external / METADATA_CSV).unlink()  # optional: every value missing
    assert prepare_external(external, prepared, _params(), out)["overlap_excluded"]["lesion_id"] == 0
    (external / IMAGE_DIR / "ISIC_9999999.jpg").write_text("not an image")
    with pytest.raises(DataError, match=r"ISIC_9999999.jpg: cannot decode.*skip_bad_images"):
        prepare_external(external, prepared, _params(), out)
    assert prepare_external(external, prepared, _params(skip_bad_images=True), out)["skipped"] == 1
    truth = external / "ISIC_2019_Training_GroundTruth.csv"
    truth.write_text(truth.read_text().replace("image,MEL,", "image,MELANOMA,"))  # a class the data lacks
    with pytest.raises(DataError, match=r"GroundTruth.csv: label 'MELANOMA' is not one of the classes \['MEL', "):
        prepare_external(external, prepared, _params(), out)


def test_evaluate_external_scores_the_kept_images_as_predict_does(tmp_path, sets):
    prepared, external, files = sets
    work = tmp_path / "work"
    (work / "models").mkdir(parents=True)
    write_params(work, {"prepare": {"image_size": SIZE, "workers": 1}, "evaluate": {"subgroup_min_images": 5}})
    torch.manual_seed(0)
    save_checkpoint(
        work / "models" / "model.pt", build_model("densenet121", 8, "none").eval(), model_info(image_size=SIZE)
    )
    result = run_stage(
        "prepare_external", "--root", str(external), "--prepared", str(prepared), "--out", "data/x", cwd=work
    )
    assert result.returncode == 0, result.stderr
    arguments = ["--model", "models/model.pt", "--external", "data/x", "--metrics", "metrics/x.json"]
    arguments += ["--predictions", "eval/x/predictions.csv", "--curves", "eval/x/curves"]
    result = run_stage("evaluate", *arguments, cwd=work)
    assert result.returncode == 0, result.stderr
    report = json.loads((work / "metrics" / "x.json").read_text())
    assert report["images"] == 12 and report["overlap_excluded"]["total"] == 3 and report["images_in_folder"] == 15
    assert report["subgroups"]["sex"]["female"]["images"] == 12 and "per_class" in report
    scored = pd.read_csv(work / "eval" / "x" / "predictions.csv")
    kept = [str(external / IMAGE_DIR / f"{file.stem}.jpg") for file in files[6:18]]
    result = run_cli("predict", *kept, "--model", "models/model.pt", "--out", "predicted.csv", cwd=work)
    assert result.returncode == 0, result.stderr
    predicted = pd.read_csv(work / "predicted.csv")
    columns = [f"p_{name}" for name in CLASSES]
    assert np.abs(scored[columns].to_numpy() - predicted[columns].to_numpy()).max() <= 2e-6
    assert list(scored["image"]) == [file.stem for file in files[6:18]]


@pytest.mark.slow
def test_an_external_set_as_an_experiment_scores_only_it_and_compare_reads_it(built_tiny, tmp_path, shared_data):
    repo = copy_built(built_tiny, tmp_path / "repo")
    mini = shared_data / "isic2019-mini"
    output = run_dvc("exp", "run", "--name", "with-mini", "-S", f"+evaluate.external.mini={mini}", cwd=repo)
    assert set(stages_run(output)) == {"prepare-external@mini", "evaluate-external@mini", "model-card"}
    report = json.loads((repo / "metrics" / "external" / "mini.json").read_text())
    assert report["images_in_folder"] == 70 and report["images"] + report["overlap_excluded"]["total"] == 70
    assert "eval/external/mini/predictions.csv" in run_dvc("plots", "show", "--json", cwd=repo)
    left_out = report["overlap_excluded"]["total"]
    assert f"| mini | {report['images']} | {left_out} of 70 |" in (repo / "models" / "model_card.md").read_text()
    result = run_cli("compare", "with-mini", ".", "--resamples", "50", "--json", cwd=repo)
    assert result.returncode == 0, result.stderr
    assert list(json.loads(result.stdout)[0]["sets"]) == ["test", "mini"]
