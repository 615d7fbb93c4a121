"""Crash-safe writing: outputs appear under their final names only when complete."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _remove_leftovers(path: Path) -> None:
    """Remove temporary names a killed earlier write of `path` left behind."""
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` whole.

    If the block raises (or the process dies), `path` is not created and the temporary
    folder is removed (or left under a hidden `.name.tmp-*` name that nothing reads, and
    that the next write of `path` removes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the output is an ordinary folder
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_files(folder: str | Path, names: list[str]) -> Iterator[Path]:
    """Yield a temporary folder beside `folder` in which to write the files `names`; on
    success they are moved into `folder`, beside whatever else it holds (a DVC .gitignore).

    For a stage whose outputs are single files in one folder (DVC tracks each on its own).
    If the block raises, the old files stay as they were. Once it has written every name (and
    no other), the old files of those names are all removed before the new ones are moved in,
    so a process killed in between leaves some missing, never a mix of old and new.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        yield tmp
        written = sorted(entry.name for entry in tmp.iterdir())
        if written != sorted(names):
            raise RuntimeError(f"{folder}: expected to write {sorted(names)}, wrote {written}")
        folder.mkdir(exist_ok=True)
        for name in names:
            (folder / name).unlink(missing_ok=True)
        for name in names:
            os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file name beside `path`; on success it is renamed to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(0o644)  # mkstemp makes it private; the output is an ordinary file
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_json(path: str | Path, data: Any) -> None:
    """Write `data` as indented JSON, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
