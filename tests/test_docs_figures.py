"""The figures docs/benchmarks.md, cross-validation.md, comparing.md and experiments.md quote
agree with the committed results files they come from (tools/docs_figures.py): a figure edited
in a page, or a report committed anew without its page, fails here. Cheap: JSON and a few CSVs."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from sklearn.metrics import balanced_accuracy_score, roc_auc_score


def _load_generator():
    spec = importlib.util.spec_from_file_location("docs_figures", REPO / "tools" / "docs_figures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


docs_figures = _load_generator()
PREDICTIONS = REPO / "benchmarks" / "results" / "cpu" / "real_data_predictions"


@pytest.mark.parametrize("page", sorted(docs_figures.PAGES), ids=str)
def test_every_figure_quoted_agrees_with_its_file(page):
    figures = [render() for render in docs_figures.PAGES[page]]
    problems = docs_figures.check(page, (REPO / page).read_text(encoding="utf-8"), figures)
    assert not problems, "\n".join([*problems, "tables: run python -m tools.docs_figures; quotes: edit the page"])


def test_a_figure_changed_in_the_page_or_its_file_is_named():
    mark = docs_figures.marker("prepare")
    page = f"intro\n\n{mark}\n| old | table |\n{mark}\n\nIt took **63\ns** in all.\n"
    current = docs_figures.Figures(REPO / "prepare.json", {"prepare": "| new | table |"}, ["took 63 s in all"])
    stale = docs_figures.check("page.md", page, [current])
    assert stale == [f"page.md: table prepare differs from {current.source}"]
    assert docs_figures.with_blocks(page, current.blocks) == page.replace("| old | table |", "| new | table |")
    edited = docs_figures.check("page.md", page.replace("63", "64"), [current])
    assert edited[-1] == f"page.md: not found (from {current.source}): 'took 63 s in all'"
    unmarked = docs_figures.check("page.md", "no comments", [current])
    assert unmarked == [f"page.md: no table prepare: the page needs two {mark} comments around it"]


def _predictions(run: str, image_set: str) -> pd.DataFrame:
    folder = PREDICTIONS / run / "eval"
    return pd.read_csv(folder / ("predictions.csv" if image_set == "test" else f"external/{image_set}/predictions.csv"))


@pytest.mark.parametrize("image_set", ["test", "mini"])
def test_the_compare_example_is_what_the_committed_predictions_give(image_set):
    """comparing.md's example is written from the report the benchmark stored; each run's
    balanced accuracy and macro AUC, and each class's recall, recomputed from its predictions."""
    report = docs_figures._metadata_against_recipe()[image_set]
    recalls = {"a": [], "b": []}
    for side in ("a", "b"):
        for run, balanced, auc in zip(
            report[side], report["balanced_accuracy"][side]["runs"], report["macro_auc"][side]["runs"], strict=True
        ):
            table = _predictions(run, image_set)
            classes = [column.removeprefix("p_") for column in table.columns if column.startswith("p_")]
            probabilities = table[[f"p_{name}" for name in classes]].to_numpy()
            predicted = np.asarray(classes)[probabilities.argmax(axis=1)]
            assert len(table) == report["images"]
            assert balanced_accuracy_score(table["label"], predicted) == pytest.approx(balanced, abs=5e-5)
            present = [k for k, name in enumerate(classes) if (table["label"] == name).any()]
            aucs = [roc_auc_score(table["label"] == classes[k], probabilities[:, k]) for k in present]
            assert np.mean(aucs) == pytest.approx(auc, abs=5e-5)
            shown = report["per_class_recall"]  # the classes with test images
            recalls[side].append({name: (predicted[table["label"] == name] == name).mean() for name in shown})
    for name, row in report["per_class_recall"].items():
        assert np.mean([by_class[name] for by_class in recalls["a"]]) == pytest.approx(row["a"], abs=5e-5)
        assert np.mean([by_class[name] for by_class in recalls["b"]]) == pytest.approx(row["b"], abs=5e-5)
