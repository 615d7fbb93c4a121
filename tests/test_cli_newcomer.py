"""What a newcomer meets first with the `skinlesion` command: output into a pipe that closes
early, a missing model file, and --help pages that show their defaults."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

from skinlesion.cli import CLOSED_PIPE, parser


def _subcommands() -> dict:
    action = next(a for a in parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


@pytest.mark.parametrize(
    "args, status",
    [(["check-params", "params.yaml", "profiles/isic2019.yaml"], CLOSED_PIPE), (["compare", "--help"], 0)],
)
def test_output_into_a_closed_pipe_ends_quietly(args, status):
    """As `skinlesion ... | head -2` once `head` has gone: no BrokenPipeError traceback (argparse's
    --help drops what it cannot write itself)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes a byte
    try:
        result = subprocess.run(
            [sys.executable, "-m", "skinlesion", *args],
            cwd=REPO,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr
    assert "Exception ignored" not in result.stderr


# calls the command in a fresh interpreter, then reports its status and whether torch was imported
PROBE = """
import json, sys
from skinlesion.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit_:
    print(json.dumps({"status": exit_.code, "torch": "torch" in sys.modules}))
"""


@pytest.mark.parametrize(
    "args",
    [["predict", "a.jpg"], ["predict", "a.jpg", "--model", "models/model.onnx"], ["export"]],
)
def test_a_missing_model_file_is_named_before_torch_is_imported(tmp_path, args):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=tmp_path,  # no models/ here
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )
    assert json.loads(result.stdout) == {"status": 2, "torch": False}, result.stderr
    assert "model file not found" in result.stderr
    if args[-1].endswith(".onnx"):
        assert "skinlesion export --model models/model.pt writes it" in result.stderr
    else:
        assert "models/model.pt: model file not found" in result.stderr
        assert "dvc repro" in result.stderr and "dvc pull" in result.stderr


def test_every_subcommand_help_shows_its_defaults_and_no_escaped_percent():
    pages = {name: " ".join(command.format_help().split()) for name, command in _subcommands().items()}
    for name, page in pages.items():
        assert "%%" not in page, name
    assert "95% interval" in pages["compare"]
    assert "(default: 2000)" in pages["compare"] and "(default: .)" in pages["compare"]
    assert "(default: models/model.pt)" in pages["predict"] and "(default: 32)" in pages["predict"]
    assert "(default: params.yaml)" in pages["check-params"]
    assert "(default: None)" not in "".join(pages.values())  # an option without a default says nothing
    assert "(default: False)" not in "".join(pages.values())
