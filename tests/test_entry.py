"""How stages and the `skinlesion` command end: the project's own errors as one line and exit
status 2, anything else with its traceback."""

import json

import pytest
from conftest import run_stage, write_params

from skinlesion.cli import main as skinlesion
from skinlesion.config import ParamsError
from skinlesion.entry import INPUT_ERROR, report_errors
from skinlesion.errors import DataError, TrainingError, WeightsError
from skinlesion.schema import params_schema


@pytest.mark.parametrize(
    "error",
    [
        ParamsError("params: training.epochs: must be greater than 0, got 0"),
        DataError("data/x.csv: line 3: unknown class 'MELANOMA'"),
        WeightsError("models/model.pt: not a model of this project"),
        TrainingError("out of memory in epoch 2: lower training.batch_size"),
        FileNotFoundError("models/model.pt: model file not found"),
    ],
)
def test_a_known_error_is_one_line_and_status_2(error, capsys):
    def main():
        raise error

    assert report_errors("stage demo", main) == INPUT_ERROR == 2
    assert capsys.readouterr().err == f"stage demo: error: {error}\n"


def test_a_main_that_returns_gives_its_status():
    assert report_errors("stage demo", lambda: None) == 0
    assert report_errors("skinlesion predict", lambda: 1) == 1


def test_an_unexpected_error_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError):
        report_errors("stage demo", lambda: 1 / 0)


def test_a_stage_with_a_bad_param_says_so_in_one_line(tmp_path):
    write_params(tmp_path, {"cv": {"folds": [0, 2]}})
    result = run_stage("assign_folds", "--prepared", str(tmp_path), "--out", str(tmp_path / "f.csv"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "stage assign-folds: error: params: cv.folds: list the folds from 0: [0] for the single train/val split, "
        "[0, 1, 2, 3, 4] for 5-fold cross-validation (dvc exp run -S 'cv.folds=[0,1,2,3,4]'); got [0, 2]"
    ]
    assert not (tmp_path / "f.csv").exists()


def test_check_params_names_the_file_and_key(tmp_path, capsys):
    good = write_params(tmp_path, {})
    (tmp_path / "bad").mkdir()
    bad = write_params(tmp_path / "bad", {"training": {"epochs": 0}})
    with pytest.raises(SystemExit) as status:
        skinlesion(["check-params", str(good)])
    assert status.value.code == 0 and capsys.readouterr().out == f"{good}: ok\n"
    with pytest.raises(SystemExit) as status:
        skinlesion(["check-params", str(bad)])
    assert status.value.code == 2
    assert capsys.readouterr().err == (
        "skinlesion check-params: error: params: training.epochs: must be greater than 0, got 0\n"
    )


def test_params_schema_writes_the_schema_of_every_section(tmp_path):
    with pytest.raises(SystemExit) as status:
        skinlesion(["params-schema", "--out", str(tmp_path / "schema.json")])
    assert status.value.code == 0
    assert json.loads((tmp_path / "schema.json").read_text()) == params_schema()


def test_a_profile_with_a_misspelt_key_fails_before_dvc_runs(tmp_path, monkeypatch, capsys):
    write_params(tmp_path, {})
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "typo.yaml").write_text("training:\n  epohcs: 2\n")
    monkeypatch.chdir(tmp_path)  # no dvc repository here: dvc exp run would fail if it started
    with pytest.raises(SystemExit) as status:
        skinlesion(["run-profile", "typo"])
    assert status.value.code == 2
    assert capsys.readouterr().err == (
        "skinlesion run-profile: error: profile typo: training.epohcs is not a key of params.yaml; "
        "did you mean 'epochs'?\n"
    )
