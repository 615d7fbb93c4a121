"""benchmarks/real_data.py: settings from the command line, and the table it writes into a doc."""

import argparse

import pytest

from benchmarks.real_data import MARK, parse_setting, write_markdown


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
