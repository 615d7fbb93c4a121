"""What a card is made of (paragraphs, tables, pictures, lists, commands, titled sections),
rendered once as Markdown and once as HTML (skinlesion.card.render), and how it prints figures."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Table:
    """A table of text cells."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Picture:
    """A figure: PNG bytes with a caption."""

    caption: str
    png: bytes
    table: Table | None = None  # what Markdown shows in its place (the HTML shows the picture)


@dataclass(frozen=True)
class Bullets:
    """A bulleted list."""

    items: tuple[str, ...]


@dataclass(frozen=True)
class Code:
    """Commands, shown as they are typed."""

    text: str


Block = str | Table | Picture | Bullets | Code  # a str is a paragraph; `backticks` mark code


@dataclass(frozen=True)
class Section:
    """A titled part of the card; `anchor` is its HTML id."""

    title: str
    blocks: tuple[Block, ...]

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


@dataclass(frozen=True)
class Card:
    """The card: a title, a one-line summary, the sections."""

    title: str
    summary: str
    sections: tuple[Section, ...]


def number(value: float | int | None, digits: int = 3) -> str:
    """A figure as the card prints it: floats to `digits` decimals, None as n/a."""
    if value is None:
        return "n/a"
    return str(value) if isinstance(value, int | np.integer) else f"{value:.{digits}f}"


def param_value(value: Any) -> str:
    """A params value as params.yaml writes it (true, [0.8, 1.0], 0.0001)."""
    return value if isinstance(value, str) else json.dumps(value)


def listing(counts: dict[str, Any]) -> str:
    """`{"AK": 4, "DF": 3}` as "AK (4), DF (3)"."""
    return ", ".join(f"{name} ({count})" for name, count in counts.items())
