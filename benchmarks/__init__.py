"""Speed and memory measurements, each against a baseline measured in the same run."""

from __future__ import annotations

import json
from pathlib import Path


def publish(report: dict, out: Path | None) -> None:
    """Print the report as JSON and, when `out` is given, also write it there."""
    text = json.dumps(report, indent=2)
    print(text, flush=True)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
