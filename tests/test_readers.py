"""Reading YAML and JSON files: every way a file can be wrong is a DataError naming it."""

import pytest

from skinlesion.config import load_params
from skinlesion.errors import DataError
from skinlesion.files import read_json, read_yaml
from skinlesion.schema import ParamsFile


def test_a_mapping_is_read_and_an_empty_file_is_an_empty_one(tmp_path):
    (tmp_path / "p.yaml").write_text("training:\n  epochs: 2\n")
    (tmp_path / "empty.yaml").write_text("# nothing changed\n")
    (tmp_path / "eval.json").write_text('{"test": {"balanced_accuracy": 0.5}}')
    assert read_yaml(tmp_path / "p.yaml") == {"training": {"epochs": 2}}
    assert read_yaml(tmp_path / "empty.yaml") == {}
    assert read_json(tmp_path / "eval.json") == {"test": {"balanced_accuracy": 0.5}}


@pytest.mark.parametrize(
    ("name", "content", "read", "message"),
    [
        ("absent.yaml", None, read_yaml, r"absent\.yaml: not found \(run from the repository root\)"),
        ("absent.json", None, read_json, r"absent\.json: not found \(run dvc repro: an earlier stage writes it\)"),
        ("bad.yaml", b"training: [1, 2\n", read_yaml, r"bad\.yaml: not valid YAML \("),
        ("list.yaml", b"- 1\n- 2\n", read_yaml, r"list\.yaml: expected a mapping, got list"),
        ("bad.json", b"{'single': 'quotes'}", read_json, r"bad\.json: not valid JSON \("),
        ("latin1.yaml", "note: caf\xe9\n".encode("latin-1"), read_yaml, r"latin1\.yaml: not UTF-8 text \("),
        ("folder.json", "folder", read_json, r"folder\.json: cannot be read \("),
    ],
)
def test_a_file_that_cannot_be_read_is_a_data_error_naming_it(tmp_path, name, content, read, message):
    path = tmp_path / name
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read(path)


def test_a_missing_params_file_names_it(tmp_path):
    with pytest.raises(DataError, match=r"params\.yaml: not found \(run from the repository root\)"):
        load_params(ParamsFile, tmp_path / "params.yaml")
