"""How every stage and the `skinlesion` command start: logging set up once, and the project's
own errors (bad params, bad input files, a model file that does not fit, training that cannot
go on) reported as one line and a non-zero exit. Any other error keeps its traceback: it is a
bug to report, not input to fix."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from skinlesion.config import ParamsError
from skinlesion.errors import DataError, DeviceError, MissingExtraError, TrainingError, WeightsError

# errors whose message says what to change; FileNotFoundError's names the file
KNOWN_ERRORS = (
    ParamsError,
    DataError,
    WeightsError,
    TrainingError,
    DeviceError,
    MissingExtraError,
    FileNotFoundError,
)
# the exit status of a known error: the input or the params need changing
INPUT_ERROR = 2
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def report_errors(name: str, main: Callable[[], int | None]) -> int:
    """Run `main`; returns its status (None: 0), or INPUT_ERROR after printing a known error
    as `NAME: error: message` on stderr."""
    try:
        return main() or 0
    except KNOWN_ERRORS as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return INPUT_ERROR


def run_stage(main: Callable[[], None]) -> None:
    """A stage module's `if __name__ == "__main__"`: logging at INFO, then `main`, exiting
    with report_errors' status. The stage is named as dvc.yaml names it (python -m
    stages.assign_folds: assign-folds)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    name = Path(sys.argv[0]).stem.replace("_", "-")
    sys.exit(report_errors(f"stage {name}", main))
