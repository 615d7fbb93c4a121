"""`skinlesion compare`'s reports as a terminal table or Markdown: per image set, each side's
figure (mean ± sd over its runs), B - A with its paired 95% interval and what it shows,
McNemar's test for one run a side, and recall per class; and what differs in the runs' params."""

from __future__ import annotations

MEASURES = {"balanced_accuracy": "balanced accuracy", "macro_auc": "macro AUC"}


def _side(side: dict) -> str:
    if side["mean"] is None:
        return "n/a"
    if len(side["runs"]) == 1:
        return f"{side['mean']:.4f}"
    return f"{side['mean']:.4f} ± {side['sd']:.4f} ({len(side['runs'])} runs)"


def _interval(entry: dict) -> str:
    return "n/a" if entry["ci95"] is None else f"[{entry['ci95'][0]:+.4f}, {entry['ci95'][1]:+.4f}]"


def verdict(entry: dict) -> str:
    """What B - A's interval shows."""
    if entry["ci95"] is None:
        return "undefined"
    if not entry["excludes_zero"]:
        return "no difference shown (the interval holds 0)"
    return "B better" if entry["difference"] > 0 else "B worse"


def _rows(report: dict) -> list[list[str]]:
    rows = []
    for key, label in MEASURES.items():
        entry = report[key]
        difference = "n/a" if entry["difference"] is None else f"{entry['difference']:+.4f}"
        rows.append([label, _side(entry["a"]), _side(entry["b"]), difference, _interval(entry), verdict(entry)])
    return rows


HEADER = ["", "A", "B", "B - A", "95% interval (paired)", "shows"]


def _heading(name: str, report: dict) -> str:
    lesions = f"of {report['lesions']} lesions" if report["lesions"] else "(no lesion ids: resampled image by image)"
    return f"{name}: {report['images']} images {lesions}; A = {', '.join(report['a'])}; B = {', '.join(report['b'])}"


def _mcnemar(report: dict) -> str | None:
    test = report.get("mcnemar")
    if test is None:
        return None
    return (
        f"McNemar (exact): only A right on {test['only_a_right']} images, only B right on {test['only_b_right']}: "
        f"p = {test['p_value']:.3g}"
    )


def _recalls(report: dict) -> list[str]:
    return [
        f"  {name:<5} {row['a']:.2f} -> {row['b']:.2f}  ({row['difference']:+.2f}, {row['images']} images)"
        for name, row in report["per_class_recall"].items()
    ]


def as_text(sets: dict[str, dict]) -> str:
    """The reports of one comparison (by image set) as aligned plain text."""
    blocks = []
    for name, report in sets.items():
        rows = [HEADER, *_rows(report)]
        widths = [max(len(row[k]) for row in rows) for k in range(len(HEADER))]
        lines = [_heading(name, report)]
        lines += ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
        lines += [line for line in (_mcnemar(report),) if line]
        lines += ["recall per class, A -> B:", *_recalls(report)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def as_markdown(sets: dict[str, dict]) -> str:
    """The reports of one comparison (by image set) as Markdown tables."""
    blocks = []
    for name, report in sets.items():
        lines = [f"**{_heading(name, report)}**", "", "| " + " | ".join(HEADER) + " |", "|---" * len(HEADER) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in _rows(report)]
        lines += ["", *[line for line in (_mcnemar(report),) if line]]
        lines += ["", "| class | images | A recall | B recall | B - A |", "|---|---|---|---|---|"]
        lines += [
            f"| {cls} | {row['images']} | {row['a']:.4f} | {row['b']:.4f} | {row['difference']:+.4f} |"
            for cls, row in report["per_class_recall"].items()
        ]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _values(shown: list[str]) -> str:
    return ", ".join(shown)


def not_one_setting(differences: dict | None) -> list[str]:
    """A warning per side whose runs differ in more than training.seed."""
    if not differences:
        return []
    return [
        f"side {side.upper()} is not one setting: its runs differ in "
        + "; ".join(f"{key} ({_values(shown)})" for key, shown in keys.items())
        for side, keys in differences["within"].items()
        if keys
    ]


def params_lines(differences: dict | None, *, markdown: bool = False) -> list[str]:
    """What differs in params.yaml, A -> B, and within each side (params_differences' report),
    as indented lines or a Markdown list."""
    if differences is None:
        return []
    between = differences["between"]
    items = [f"{key}: {_values(a)} -> {_values(b)}" for key, (a, b) in between.items()]
    for side, keys in differences["within"].items():
        items += [f"within {side.upper()}: {key}: {_values(shown)}" for key, shown in keys.items()]
    if differences["unknown"]:
        items.append(f"no params.yaml: {', '.join(differences['unknown'])}")
    heading = "params, A -> B:" if between else "params: the same on both sides"
    if markdown:
        return [f"**{heading}**", "", *(f"- `{item}`" for item in items), ""] if items else [f"**{heading}**", ""]
    return [heading, *(f"  {item}" for item in items)]
