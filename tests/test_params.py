import copy
import re

import pytest
import yaml

from stages.params import CLASSES, ParamsError, load_params, params_from_dict

from conftest import REPO


def _raw():
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_repository_params_load():
    params = load_params(REPO / "params.yaml")
    assert params.model.num_classes == len(CLASSES)
    assert params.training.batch_size == 32 and params.training.learning_rate == 1e-4
    assert params.sampling.targets()["NV"] == params.sampling.majority_target


def test_full_scale_profile_carries_the_published_recipe():
    params = load_params(REPO / "profiles" / "isic2019.yaml")
    assert params.sampling.targets() == {"MEL": 3500, "NV": 3500, "BCC": 1500, "AK": 1500, "BKL": 1500, "DF": 1500, "VASC": 1500, "SCC": 1500}
    assert (params.training.epochs, params.training.batch_size, params.training.learning_rate) == (50, 32, 1e-4)
    assert params.prepare.image_size == 224 and params.model.weights == "imagenet"
    assert params.sampling.kmeans_clusters == 8
    assert params.augmentation.color_jitter == (0.2, 0.2, 0.2, 0.1) and params.augmentation.rotation_range == 30


def test_profiles_have_the_same_keys():
    def keys(tree, prefix=""):
        return {f"{prefix}{k}" for k in tree} | {
            key for k, v in tree.items() if isinstance(v, dict) for key in keys(v, f"{prefix}{k}.")
        }

    assert keys(_raw()) == keys(yaml.safe_load((REPO / "profiles" / "isic2019.yaml").read_text()))


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("training", "epochs", 0, "training.epochs: must be > 0"),
        ("training", "epochs", "ten", "training.epochs: must be an integer"),
        ("training", "learning_rate", True, "training.learning_rate: must be a number"),
        ("training", "device", "tpu", "training.device: unknown device 'tpu'"),
        ("training", "precision", "fp8", "training.precision: unknown precision 'fp8'"),
        ("training", "lr_schedule", "step", "training.lr_schedule: unknown schedule 'step'"),
        ("training", "loss", "dice", "training.loss: unknown loss 'dice'"),
        ("training", "warmup_epochs", 6, "training.warmup_epochs: must be within [0, epochs)"),
        ("training", "label_smoothing", 1.0, "training.label_smoothing: must be within [0, 1)"),
        ("training", "grad_clip_norm", -1.0, "training.grad_clip_norm: must be >= 0"),
        ("training", "compile", "fast", "training.compile: unknown mode 'fast'"),
        ("training", "augment_on", "gpu", "training.augment_on: unknown place 'gpu'"),
        ("training", "backend", "mpi", "training.backend: unknown backend 'mpi'"),
        ("training", "processes", 0, "training.processes: must be > 0"),
        ("training", "timeout_s", 0, "training.timeout_s: must be > 0"),
        ("sampling", "majority_classes", ["NV", "MELANOMA"], "sampling.majority_classes: unknown class 'MELANOMA'"),
        ("prepare", "test_fraction", 0.9, "prepare.test_fraction: val_fraction + test_fraction must be below 1"),
        ("prepare", "skip_bad_images", "yes", "prepare.skip_bad_images: must be true or false"),
        ("augmentation", "color_jitter", [0.2, 0.2], "augmentation.color_jitter: must be a list of 4 values"),
        ("model", "name", "vgg16", "model.name: unknown model 'vgg16'"),
        ("model", "num_classes", 9, "model.num_classes: must be 8"),
    ],
)
def test_bad_values_name_the_key(section, key, value, message):
    raw = _raw()
    raw[section][key] = value
    with pytest.raises(ParamsError, match=re.escape(message)):
        params_from_dict(raw)


def test_misspelled_key_names_the_nearest_valid_one():
    raw = _raw()
    raw["training"]["learnig_rate"] = raw["training"].pop("learning_rate")
    with pytest.raises(ParamsError, match=r"training.learnig_rate: unknown key; did you mean 'learning_rate'\?"):
        params_from_dict(raw)


def test_missing_key_and_unknown_section_fail():
    raw = _raw()
    del raw["gradcam"]["wrong_per_class"]
    with pytest.raises(ParamsError, match="gradcam.wrong_per_class: missing"):
        params_from_dict(raw)
    raw = copy.deepcopy(_raw())
    raw["trainig"] = {}
    with pytest.raises(ParamsError, match="trainig: unknown key; did you mean 'training'"):
        params_from_dict(raw)


def test_params_are_frozen():
    params = load_params(REPO / "params.yaml")
    with pytest.raises(AttributeError):
        params.training.epochs = 80
