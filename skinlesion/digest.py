"""A file's content hash: what a model file is (predict's resumable outputs, the server's model
version) and where pretrained weights came from (the model file's record)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path) -> str:
    """The sha256 of the file at `path`, in hex, read in blocks (a model file may be large)."""
    with Path(path).open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
