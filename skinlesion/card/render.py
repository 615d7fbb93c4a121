"""The card as Markdown and as one self-contained HTML page: every figure a PNG inlined as a
data: URI, the CSS inline, no script, so the page opens from a file, offline."""

from __future__ import annotations

import base64
import html
import itertools
import re

from skinlesion.card.blocks import Block, Bullets, Card, Code, Picture, Section, Table


def markdown_table(table: Table) -> str:
    """A pipe table; pipes in cells escaped."""

    def row(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([row(table.header), "|" + "---|" * len(table.header), *map(row, table.rows)])


def markdown_block(block: Block) -> str:
    """One block as Markdown; a picture as its caption and, where it has one, its table."""
    if isinstance(block, Table):
        return markdown_table(block)
    if isinstance(block, Picture):  # Markdown viewers rarely show data: URIs; the HTML card has the picture
        caption = f"*{block.caption} (picture in the HTML card)*"
        return caption + ("\n\n" + markdown_table(block.table) if block.table else "")
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Code):
        return f"```\n{block.text}\n```"
    return block


def card_markdown(card: Card) -> str:
    """The card as Markdown: the same sections as the HTML, tables in place of pictures."""
    parts = [f"# {card.title}", card.summary]
    for section in card.sections:
        parts.append(f"## {section.title}")
        parts += [markdown_block(block) for block in section.blocks]
    return "\n\n".join(parts) + "\n"


# ---- HTML -------------------------------------------------------------------------------------

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1d2330;
  background: #fff; margin: 0; }
main { max-width: 60rem; margin: 0 auto; padding: 1.5rem 2rem 3rem; }
h1 { font-size: 1.7rem; margin: 0 0 .3rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 .6rem; padding-bottom: .2rem; border-bottom: 2px solid #d8dee9; }
.summary { font-size: 1.05rem; color: #3b4252; }
table { border-collapse: collapse; margin: .6rem 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d8dee9; padding: .25rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #eceff4; }
code, pre { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: .9em; background: #f3f4f7; }
code { padding: 0 .2em; border-radius: 3px; }
pre { padding: .6rem .8rem; overflow-x: auto; border-radius: 4px; }
figure { margin: .8rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e5e9f0; }
figcaption { font-size: .9rem; color: #4c566a; }
.panels { display: grid; grid-template-columns: repeat(auto-fit, minmax(22rem, 1fr)); gap: .8rem; }
.panels img { width: 100%; }
#limitations li { background: #fff6e0; margin: .3rem 0; padding: .2rem .5rem; border-left: 3px solid #d08770; }
"""


def inline_html(text: str) -> str:
    """Text escaped for HTML, `backticks` as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def html_table(table: Table) -> str:
    """A table with a header row."""
    head = "".join(f"<th>{inline_html(cell)}</th>" for cell in table.header)
    rows = "".join("<tr>" + "".join(f"<td>{inline_html(cell)}</td>" for cell in row) + "</tr>" for row in table.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def html_picture(picture: Picture) -> str:
    """A figure whose image is a data: URI."""
    source = "data:image/png;base64," + base64.b64encode(picture.png).decode("ascii")
    image = f'<img src="{source}" alt="{html.escape(picture.caption)}">'
    return f"<figure>{image}<figcaption>{inline_html(picture.caption)}</figcaption></figure>"


def html_block(block: Block) -> str:
    """One block as HTML."""
    if isinstance(block, Table):
        return html_table(block)
    if isinstance(block, Picture):
        return html_picture(block)
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{inline_html(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Code):
        return f"<pre><code>{html.escape(block.text)}</code></pre>"
    return f"<p>{inline_html(block)}</p>"


def html_section(section: Section) -> str:
    """A section; pictures in a row (the Grad-CAM panels) share a grid."""
    parts = []
    for is_picture, blocks in itertools.groupby(section.blocks, key=lambda block: isinstance(block, Picture)):
        shown_blocks = "".join(map(html_block, blocks))
        many = is_picture and shown_blocks.count("<figure>") > 1
        parts.append(f'<div class="panels">{shown_blocks}</div>' if many else shown_blocks)
    title = html.escape(section.title)
    return f'<section id="{section.anchor}"><h2>{title}</h2>{"".join(parts)}</section>'


def card_html(card: Card) -> str:
    """The card as one HTML page that needs nothing else: inline CSS, pictures as data: URIs,
    no script; the empty data: icon keeps the browser from asking for a favicon."""
    sections = "\n".join(map(html_section, card.sections))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<link rel="icon" href="data:,">\n<title>{html.escape(card.title)}</title>\n<style>{STYLE}</style>\n'
        f'</head>\n<body>\n<main>\n<h1>{html.escape(card.title)}</h1>\n<p class="summary">'
        f"{inline_html(card.summary)}</p>\n{sections}\n</main>\n</body>\n</html>\n"
    )
