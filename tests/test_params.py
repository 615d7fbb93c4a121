import json
import re

import pytest
import yaml
from conftest import REPO

from skinlesion.classes import CLASSES
from skinlesion.config import ParamsError, apply_profile, load_params, parse_params
from skinlesion.data.prepare import PrepareRun
from skinlesion.errors import DataError
from skinlesion.evaluation.report import EvaluateRun
from skinlesion.profiles import exp_run_command
from skinlesion.schema import ParamsFile, check_params_file, params_schema
from skinlesion.training.params import TrainRun


def _raw():
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_repository_params_load():
    params = check_params_file(REPO / "params.yaml")
    assert params.training.batch_size == 32 and params.training.learning_rate == 1e-4
    assert params.sampling.targets(CLASSES)["NV"] == params.sampling.majority_target


def test_a_majority_class_the_data_lacks_is_named():
    sampling = check_params_file(REPO / "params.yaml").sampling.model_copy(update={"majority_classes": ("NV", "MELA")})
    with pytest.raises(DataError, match=re.escape("sampling.majority_classes: ['MELA'] not among the data's classes")):
        sampling.targets(CLASSES)
    high, low = sampling.majority_target, sampling.minority_target
    assert sampling.targets(("NV", "BCC", "MELA")) == {"NV": high, "BCC": low, "MELA": high}


def _full_scale():
    profile = yaml.safe_load((REPO / "profiles" / "isic2019.yaml").read_text())
    return parse_params(ParamsFile, apply_profile(_raw(), profile, "isic2019"))


def test_full_scale_profile_carries_the_published_recipe():
    params = _full_scale()
    targets = {"MEL": 3500, "NV": 3500, "BCC": 1500, "AK": 1500, "BKL": 1500, "DF": 1500, "VASC": 1500, "SCC": 1500}
    assert params.sampling.targets(CLASSES) == targets
    assert (params.training.epochs, params.training.batch_size, params.training.learning_rate) == (50, 32, 1e-4)
    assert params.prepare.image_size == 224 and params.model.weights == "imagenet"
    assert params.sampling.kmeans_clusters == 8
    assert params.augmentation.color_jitter == (0.2, 0.2, 0.2, 0.1) and params.augmentation.rotation_range == 30


def test_a_profile_changes_only_keys_params_yaml_has():
    with pytest.raises(ParamsError, match="profile p: training.epohcs is not a key of params.yaml"):
        apply_profile(_raw(), {"training": {"epohcs": 80}}, "p")
    with pytest.raises(ParamsError, match="profile p: nothing.epochs is not a key"):
        apply_profile(_raw(), {"nothing": {"epochs": 80}}, "p")
    assert _raw()["training"]["epochs"] != 80  # the base is not modified


def test_a_profile_runs_as_one_dvc_exp_run_with_a_set_per_key():
    command = exp_run_command("isic2019", {"prepare": {"image_size": 224}, "model": {"weights": "imagenet"}}, [])
    assert command[1:] == ["-m", "dvc", "exp", "run", "--temp", "--name", "isic2019"] + [
        "-Sprepare.image_size=224",
        "-Smodel.weights=imagenet",
    ]
    assert "--temp" not in exp_run_command("p", {}, ["--queue"])


def test_a_path_out_of_the_repository_is_made_absolute_for_the_experiments_copy(tmp_path, monkeypatch):
    """--temp runs in a copy of the workspace under .dvc/tmp, where ../data names another folder."""
    monkeypatch.chdir(tmp_path)
    outside = str(tmp_path.parent / "data")
    extra = ["-S", "data.root=../data", "-Sevaluate.external.mini=../mini", "--set-param", "data.root=data/x"]
    command = exp_run_command("p", {"data": {"root": "../data"}, "prepare": {"image_size": 128}}, extra)
    assert command[-7:] == [
        f"-Sdata.root={outside}",
        "-Sprepare.image_size=128",
        "-S",
        f"data.root={outside}",
        f"-Sevaluate.external.mini={tmp_path.parent / 'mini'}",
        "--set-param",
        "data.root=data/x",  # inside the repository: the copy has it too
    ]


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("training", "epochs", 0, "training.epochs: must be greater than 0, got 0"),
        ("training", "epochs", "ten", "training.epochs: must be a valid integer, got 'ten'"),
        ("training", "epochs", 10.0, "training.epochs: must be a valid integer, got 10.0"),
        ("training", "learning_rate", True, "training.learning_rate: must be a valid number, got True"),
        ("training", "device", "tpu", "training.device: unknown value 'tpu'; choose one of 'auto', 'cuda', 'mps' or"),
        ("training", "precision", "fp8", "training.precision: unknown value 'fp8'"),
        ("training", "lr_schedule", "step", "training.lr_schedule: unknown value 'step'"),
        ("training", "loss", "dice", "training.loss: unknown value 'dice'"),
        ("training", "warmup_epochs", 6, "training.warmup_epochs: must be within [0, epochs), got 6"),
        ("training", "label_smoothing", 1.0, "training.label_smoothing: must be less than 1, got 1.0"),
        ("training", "grad_clip_norm", -1.0, "training.grad_clip_norm: must be greater than or equal to 0"),
        ("training", "compile", "fast", "training.compile: unknown value 'fast'"),
        ("training", "augment_on", "gpu", "training.augment_on: unknown value 'gpu'"),
        ("training", "backend", "mpi", "training.backend: unknown value 'mpi'"),
        ("training", "processes", 0, "training.processes: must be greater than 0"),
        ("training", "batch_size", 30, "training.batch_size: 30 does not split evenly over 4 processes"),
        ("training", "timeout_s", 0, "training.timeout_s: must be greater than 0"),
        ("sampling", "majority_classes", "NV", "sampling.majority_classes: must be a valid tuple, got 'NV'"),
        ("prepare", "test_fraction", 0.9, "prepare.test_fraction: val_fraction + test_fraction must be below 1"),
        ("prepare", "skip_bad_images", "yes", "prepare.skip_bad_images: must be a valid boolean, got 'yes'"),
        ("augmentation", "color_jitter", [0.2, 0.2], "augmentation.color_jitter[2]: missing"),
        (
            "augmentation",
            "color_jitter",
            [0.2, 0.2, 0.2, 0.9],
            "augmentation.color_jitter: values must be >= 0 and hue",
        ),
        ("model", "name", "vgg16", "model.name: unknown value 'vgg16'; choose one of 'densenet121', 'resnet50', 'effi"),
        ("model", "num_classes", 8, "model.num_classes: removed: the classes are the ground truth's columns"),
    ],
)
def test_bad_values_name_the_key(section, key, value, message):
    raw = _raw()
    raw[section][key] = value
    if key == "batch_size":
        raw["training"]["processes"] = 4
    with pytest.raises(ParamsError, match=re.escape(message)):
        parse_params(ParamsFile, raw)


def test_misspelled_key_names_the_nearest_valid_one():
    raw = _raw()
    raw["training"]["learnig_rate"] = raw["training"].pop("learning_rate")
    with pytest.raises(ParamsError, match=r"training.learnig_rate: unknown key; did you mean 'learning_rate'\?"):
        parse_params(TrainRun, raw)


def test_missing_key_and_misspelled_section_fail():
    raw = _raw()
    del raw["gradcam"]["wrong_per_class"]
    with pytest.raises(ParamsError, match="gradcam.wrong_per_class: missing"):
        parse_params(ParamsFile, raw)
    raw = _raw()
    raw["trainig"] = raw.pop("training")
    with pytest.raises(ParamsError, match=r"training: missing \(found 'trainig': a misspelling\?\)"):
        parse_params(TrainRun, raw)
    with pytest.raises(ParamsError, match="trainig: unknown key; did you mean 'training'"):
        parse_params(ParamsFile, raw)


def test_a_stage_reads_only_its_own_sections():
    """A bad value in a section prepare-split does not read cannot stop it; the stage that
    owns the section refuses it."""
    raw = _raw()
    raw["training"]["epochs"] = 0
    raw["training"]["future_option"] = 1
    assert parse_params(PrepareRun, raw).prepare.image_size == raw["prepare"]["image_size"]
    assert parse_params(EvaluateRun, raw).training.device == raw["training"]["device"]  # a view of one key
    with pytest.raises(ParamsError, match="training.future_option: unknown key"):
        parse_params(TrainRun, raw)


def test_params_are_frozen():
    params = load_params(TrainRun, REPO / "params.yaml")
    with pytest.raises(ValueError, match="frozen"):
        params.training.epochs = 80


def test_the_published_json_schema_is_current_and_checks_params(tmp_path):
    """params.schema.json is what `skinlesion params-schema` writes, and it describes every key."""
    committed = json.loads((REPO / "params.schema.json").read_text())
    assert committed == params_schema()
    assert set(committed["properties"]) == set(_raw())
    training = committed["$defs"]["TrainingParams"]
    assert training["additionalProperties"] is False
    assert training["properties"]["device"]["enum"] == ["auto", "cuda", "mps", "cpu"]
    assert (REPO / "params.yaml").read_text().startswith("# yaml-language-server: $schema=params.schema.json")


def test_check_params_checks_a_profile_applied_onto_params_yaml(tmp_path, capsys, monkeypatch):
    """A profile holds only the keys it changes: `sample: missing` would be no finding."""
    from skinlesion.cli import main as skinlesion

    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as status:
        skinlesion(["check-params", "profiles/isic2019.yaml", "params.yaml"])
    assert status.value.code == 0
    assert capsys.readouterr().out == "profiles/isic2019.yaml: ok (applied onto params.yaml)\nparams.yaml: ok\n"

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "bad.yaml").write_text("training:\n  epochs: 0\n")
    with pytest.raises(SystemExit) as status:
        skinlesion(["check-params", str(profiles / "bad.yaml")])
    assert status.value.code == 2
    assert "training.epochs: must be greater than 0, got 0" in capsys.readouterr().err


def test_a_misspelt_profile_key_names_the_nearest_one():
    with pytest.raises(ParamsError, match=r"training.epohcs is not a key of params.yaml; did you mean 'epochs'\?"):
        apply_profile(_raw(), {"training": {"epohcs": 80}}, "p")
    with pytest.raises(ParamsError, match=r"trainig.epochs is not a key of params.yaml; did you mean 'training'\?"):
        apply_profile(_raw(), {"trainig": {"epochs": 80}}, "p")


def test_run_profile_refuses_a_misspelt_key_before_dvc_runs(tmp_path, monkeypatch, capsys):
    from skinlesion.cli import main as skinlesion

    monkeypatch.chdir(REPO)
    monkeypatch.setattr("skinlesion.profiles.subprocess.run", lambda *args, **kwargs: pytest.fail("dvc ran"))
    profile = tmp_path / "typo.yaml"
    profile.write_text("model:\n  wieghts: imagenet\n")
    with pytest.raises(SystemExit) as status:
        skinlesion(["run-profile", str(profile)])
    assert status.value.code == 2
    assert "model.wieghts is not a key of params.yaml; did you mean 'weights'?" in capsys.readouterr().err
