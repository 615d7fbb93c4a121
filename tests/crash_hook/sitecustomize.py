"""Kill a pipeline stage with SIGKILL at a chosen point, for the crash-safety tests.

Put this folder first on PYTHONPATH and set KILL_BEFORE_RENAME=N: a process running a
`stages.*` module kills itself just before its N-th os.replace (the move of a finished
output to its final name), after writing the name it was about to create to KILL_RECORD.
Other processes (dvc itself) are untouched.
"""

import os
import signal
import sys
from pathlib import Path

_target = int(os.environ.get("KILL_BEFORE_RENAME", "0"))
_replace = os.replace
_count = 0


def _replace_or_die(src, dst, *args, **kwargs):
    global _count
    if Path(sys.argv[0]).parent.name == "stages":
        _count += 1
        if _count == _target:
            Path(os.environ["KILL_RECORD"]).write_text(os.fspath(dst))
            os.kill(os.getpid(), signal.SIGKILL)
    return _replace(src, dst, *args, **kwargs)


if _target:
    os.replace = _replace_or_die
