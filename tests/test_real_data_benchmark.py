"""benchmarks/real_data.py: settings from the command line, and the table it writes into a doc."""

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.real_data import (
    MARK,
    finished_rows,
    mark,
    paired,
    parse_setting,
    seeds_markdown,
    seeds_of,
    write_markdown,
)
from skinlesion.classes import CLASSES

REPO = Path(__file__).resolve().parents[1]


def test_a_setting_is_a_name_and_overrides_whose_values_may_be_lists():
    assert parse_setting("mine:augmentation.crop_scale=[0.08,1.0],training.epochs=2") == (
        "mine",
        {"augmentation.crop_scale": "[0.08,1.0]", "training.epochs": "2"},
    )
    assert parse_setting("plain:") == ("plain", {})
    with pytest.raises(argparse.ArgumentTypeError, match="has no name"):
        parse_setting(":training.epochs=2")
    with pytest.raises(argparse.ArgumentTypeError, match="'epochs' is not key=value"):
        parse_setting("bad:epochs")


def test_the_table_replaces_only_its_block_of_the_doc(tmp_path):
    doc = tmp_path / "real_data.md"
    write_markdown(doc, f"{MARK}\nfirst\n{MARK}")
    assert doc.read_text() == f"{MARK}\nfirst\n{MARK}\n"
    doc.write_text(f"# Title\n\nbefore\n\n{MARK}\nold table\n{MARK}\n\nafter\n")
    write_markdown(doc, f"{MARK}\nnew table\n{MARK}")
    assert doc.read_text() == f"# Title\n\nbefore\n\n{MARK}\nnew table\n{MARK}\n\nafter\n"


def _predictions(right: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = np.arange(400) % len(CLASSES)
    predicted = np.where(rng.random(400) < right, labels, (labels + 1) % len(CLASSES))
    table = pd.DataFrame({"image": [f"ISIC_{k}" for k in range(400)], "lesion": [f"L{k // 2}" for k in range(400)]})
    table["label"] = np.asarray(CLASSES)[labels]
    for k, name in enumerate(CLASSES):
        table[f"p_{name}"] = np.where(predicted == k, 0.9, 0.1 / 7)
    return table


def test_seeds_are_compared_with_the_baseline_on_every_image_set_and_tabled():
    predictions = {
        setting: {
            seed: {"test": _predictions(right, seed), "mini": _predictions(right, seed + 5)} for seed in seeds_of(3)
        }
        for setting, right in (("recipe", 0.4), ("better", 0.7))
    }
    report = paired(predictions, "recipe", resamples=200)
    better = report["better"]["test"]["balanced_accuracy"]
    assert better["excludes_zero"] and better["difference"] > 0.2 and len(better["b"]["runs"]) == 3
    assert report["recipe"]["mini"]["balanced_accuracy"]["difference"] == 0
    rows = {name: {seed: {"seconds": 60.0} for seed in seeds_of(3)} for name in predictions}
    table = seeds_markdown(
        {"paired": report, "baseline": "recipe", "rows": rows, "budget": "cpu", "budget_overrides": {"a": "1"}}
        | {"seeds": seeds_of(3), "commit": "0123456789abc", "machine": "x86_64", "external": {"mini": "/m"}}
    )
    assert table.startswith(MARK) and table.endswith(MARK) and "training seeds 42, 43, 44" in table
    line = next(line for line in table.splitlines() if line.startswith("| better |"))
    assert f"**{better['difference']:+.3f}**" in line and line.endswith("| 1.0 min |")


def test_each_budget_has_its_own_block_in_the_doc(tmp_path):
    doc = tmp_path / "real_data.md"
    write_markdown(doc, f"{MARK}\nfrom scratch\n{MARK}")
    transfer = mark("transfer-cpu")
    write_markdown(doc, f"{transfer}\ntransfer\n{transfer}", transfer)
    write_markdown(doc, f"{transfer}\ntransfer, two seeds\n{transfer}", transfer)
    assert doc.read_text() == f"{MARK}\nfrom scratch\n{MARK}\n\n{transfer}\ntransfer, two seeds\n{transfer}\n"


def test_a_resumed_run_keeps_finished_rows_only_for_the_same_settings():
    parser = argparse.ArgumentParser()
    report = {"data_root": "d", "budget": "transfer-cpu", "budget_overrides": {"a": "1"}, "external": {}}
    report["baseline"] = "recipe"
    report["settings"] = {"recipe": {}, "plain": {"x": "1"}}
    previous = report | {"rows": {"recipe": {"42": {"seconds": 1.0}}}}
    assert finished_rows(previous, report, parser) == {"recipe": {42: {"seconds": 1.0}}}
    changed = previous | {"settings": {"recipe": {"y": "2"}}}
    with pytest.raises(SystemExit):
        finished_rows(changed, report, parser)
    other_only = report | {"settings": {"plain": {"x": "1"}}}  # --only plain: recipe's rows are kept
    assert finished_rows(previous, other_only, parser) == {"recipe": {42: {"seconds": 1.0}}}
    for stale in (previous | {"data_root": "elsewhere"}, previous | {"rows": {"recipe": {"seconds": 1.0}}}):
        with pytest.raises(SystemExit):
            finished_rows(stale, report, parser)


@pytest.mark.parametrize("report", ["real_data.json", "real_data_transfer.json"])
def test_the_docs_tables_are_what_the_committed_reports_render(report):
    """docs/real_data.md's tables are the benchmark's rendering of its committed reports: a
    figure edited in the page or in the report alone fails here."""
    figures = json.loads((REPO / "benchmarks" / "results" / "cpu" / report).read_text())
    marker = mark(figures["budget"])
    page = (REPO / "docs" / "real_data.md").read_text()
    assert page.count(marker) == 2, f"docs/real_data.md has no table of budget {figures['budget']}"
    rendered = seeds_markdown(figures).replace(marker, "")
    assert page.split(marker)[1].strip() == rendered.strip()
