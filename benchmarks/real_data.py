"""What the pipeline learns from real dermoscopy: named settings, each at the same budget.

Every setting is a set of `-S key=value` overrides run through `dvc exp run` (up to
evaluate) on the ISIC-layout folder --data-root, in a temporary clone of the repository's
committed HEAD, so the workspace is untouched. Between settings the clone is reset with
`git checkout -- .`, so each one starts from HEAD's params plus the budget. prepare-split
runs once first (unreported); settings that do not change its params restore it from the
run cache. One row per setting: test balanced accuracy with its 95% interval, accuracy,
macro AUC, ECE, per-class recall, the kept epoch's validation balanced accuracy, the last
epoch's training balanced accuracy (on augmented images), and wall time; with several folds
(cv.folds) the row is their ensemble's, fold 0's for the two epoch columns, and the JSON report
holds evaluate's `cv` figures too (each fold model's, their mean and spread, out of fold).

    python -m benchmarks.real_data --data-root ../shared/data/isic2019-dev \\
        --out benchmarks/results/cpu/real_data.json --markdown docs/real_data.md
    python -m benchmarks.real_data --data-root DIR --setting mine:training.learning_rate=0.0003
    python -m benchmarks.real_data --data-root ../shared/data/isic2019-dev --seeds 3 \\
        --external mini=../shared/data/isic2019-mini --only recipe original-code metadata tta-flips no-rotation

--seeds N runs every setting with the training seeds 42, 43, ... (seeds outermost, so an
interrupted run has whole rounds) and, with the predictions of every run, compares each setting
with --baseline (recipe) as `skinlesion compare` does: the pooled paired difference of balanced
accuracy with its 95% interval, on the test split and on each --external NAME=DIR set (scored
by evaluate-external, less the images the dev set holds).

--setting adds a setting (repeatable) and --only runs a subset of the named ones. With
--markdown, the table replaces the block between the two `real-data-table` comments of
that file (or starts the file).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from benchmarks import publish
from benchmarks.timing import timed
from skinlesion.classes import CLASSES
from skinlesion.config import flatten
from skinlesion.cores import available_cores
from skinlesion.evaluation.compare import Run, compare
from skinlesion.evaluation.report_schema import EvalReport
from skinlesion.files import read_yaml

REPO = Path(__file__).resolve().parents[1]

# The budget every setting shares. cpu: one setting in about five minutes on a 2-core CPU
# with the 2,904-image dev set (about 3,000 training images per epoch at 64 px, ~35 img/s
# without pretrained weights). full: the published recipe at 224 px, for a GPU.
BUDGETS: dict[str, dict[str, str]] = {
    "cpu": {
        "prepare.image_size": "64",
        "model.weights": "none",
        "training.epochs": "3",
        "training.num_workers": "0",
        "sampling.majority_target": "600",
        "sampling.minority_target": "300",
    },
    # transfer learning on a CPU: profiles/transfer-cpu.yaml's keys (the packaged ImageNet
    # EfficientNet-Lite0 fine-tuned at 128 px), written once, in the profile
    "transfer-cpu": {
        **{key: str(value) for key, value in flatten(read_yaml(REPO / "profiles" / "transfer-cpu.yaml")).items()},
        "training.num_workers": "0",
    },
    "full": {
        "prepare.image_size": "224",
        "model.weights": "imagenet",
        "training.epochs": "50",
        "training.num_workers": "8",
        "sampling.majority_target": "3500",
        "sampling.minority_target": "1500",
    },
}

# name -> overrides on top of HEAD's params and the budget; "recipe" is the published recipe.
SETTINGS: dict[str, dict[str, str]] = {
    "recipe": {},
    # every real image augmented each epoch as the copies are (the pipeline before it followed
    # the original code here), instead of the original code's light online transform
    "augment-real-images": {"augmentation.real_images": "augment"},
    # the original code's data path: also its copies' random resized crop of 8-100% of the area
    "original-code": {"augmentation.crop_scale": "[0.08,1.0]"},
    "no-rotation": {"augmentation.rotation_range": "0"},
    # techniques past the published recipe, each alone, then together
    "metadata": {"model.use_metadata": "true"},
    "tta-flips": {"evaluate.tta": "flips"},
    "tta-dihedral": {"evaluate.tta": "dihedral"},
    "temperature": {"training.calibration": "temperature"},
    "hair": {"augmentation.hair": "0.5"},
    "frame": {"augmentation.frame": "0.5"},
    # the options that cost nothing at the CPU budget, together (docs/real_data.md)
    "tta-flips-temperature": {"evaluate.tta": "flips", "training.calibration": "temperature"},
    "metadata-tta-flips-temperature": {
        "model.use_metadata": "true",
        "evaluate.tta": "flips",
        "training.calibration": "temperature",
    },
    "combined": {
        "model.use_metadata": "true",
        "evaluate.tta": "dihedral",
        "training.calibration": "temperature",
        "augmentation.hair": "0.5",
        "augmentation.frame": "0.5",
    },
}

MARK = "<!-- real-data-table -->"

# name -> overrides for the transfer budget: the recipe's parts and options where ImageNet
# features are there to be kept or lost; "recipe" is the published recipe, fine-tuned
TRANSFER_SETTINGS: dict[str, dict[str, str]] = {
    "recipe": {},
    # what a user writes instead: every training image, a class-weighted loss, no resampling
    "plain": {
        "sampling.undersample": "none",
        "sampling.oversample": "false",
        "training.loss": "weighted_cross_entropy",
    },
    # floors: the pretrained features with only the new head trained, and the network from scratch
    "linear-probe": {"training.backbone_lr_factor": "0"},
    "from-scratch": {"model.weights": "none"},
    # the recipe's own part: K-Means' choice of the majority images against a uniform draw
    "random-undersample": {"sampling.undersample": "random"},
    "metadata": {"model.use_metadata": "true"},
    "tta-flips": {"evaluate.tta": "flips"},
}
SETTINGS_OF_BUDGET = {"cpu": SETTINGS, "full": SETTINGS, "transfer-cpu": TRANSFER_SETTINGS}


def mark(budget: str) -> str:
    """The comment around a budget's table in the markdown file (the cpu budget's came first)."""
    return MARK if budget == "cpu" else f"<!-- real-data-table:{budget} -->"


def shown_path(path: Path) -> str:
    """`path` relative to the repository (../shared/... for the shared data), never this machine's layout."""
    return os.path.relpath(path, REPO)


def parse_setting(text: str) -> tuple[str, dict[str, str]]:
    """`name:key=value,key=value` -> (name, {key: value}); a value may hold commas (a list)."""
    name, _, body = text.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"setting {text!r} has no name (name:key=value,...)")
    overrides = {}
    for item in filter(None, re.split(r",(?=[\w.]+=)", body)):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"setting {name!r}: {item!r} is not key=value")
        overrides[key.strip()] = value.strip()
    return name, overrides


def run(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(args)} failed in {cwd}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def exp_run(clone: Path, name: str, overrides: dict[str, str], targets: list[str]) -> float:
    """`dvc exp run` of `targets` with `overrides`; the clone is reset first. Returns seconds."""
    run("git", "checkout", "--", ".", cwd=clone)
    flags = [arg for key, value in overrides.items() for arg in ("-S", f"{key}={value}")]
    _, seconds = timed(
        lambda: run(sys.executable, "-m", "dvc", "exp", "run", "--name", name, *flags, *targets, cwd=clone)
    )
    return seconds


def seeds_of(count: int) -> list[int]:
    """The training seeds of --seeds N: params.yaml's 42, then 43, 44, ..."""
    return [42 + k for k in range(count)]


def image_sets(clone: Path, externals: dict[str, Path]) -> dict[str, pd.DataFrame]:
    """The predictions of the experiment just run in `clone`: the test split's and each external set's."""
    found = {"test": pd.read_csv(clone / "eval" / "predictions.csv", dtype={"image": str, "lesion": str})}
    for name in externals:
        path = clone / "eval" / "external" / name / "predictions.csv"
        found[name] = pd.read_csv(path, dtype={"image": str, "lesion": str})
    return found


def keep_predictions(folder: Path, sets: dict[str, pd.DataFrame]) -> None:
    """A run's predictions under `folder` as a run of the pipeline lays them out (eval/...), so
    that `skinlesion compare FOLDER ...` reads them."""
    for name, table in sets.items():
        path = folder / "eval" / ("predictions.csv" if name == "test" else f"external/{name}/predictions.csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False)


def paired(predictions: dict[str, dict[int, dict[str, pd.DataFrame]]], baseline: str, resamples: int) -> dict:
    """Per setting and image set: skinlesion compare's report of the setting's seeds against the
    baseline's, pooled over seeds (the same lesions for both, runs drawn too)."""
    report = {}
    for name, by_seed in predictions.items():
        report[name] = {}
        for image_set in next(iter(by_seed.values())):
            mine = [Run(f"{name}-s{seed}", sets[image_set]) for seed, sets in by_seed.items()]
            theirs = [Run(f"{baseline}-s{seed}", sets[image_set]) for seed, sets in predictions[baseline].items()]
            report[name][image_set] = compare(theirs, mine, resamples=resamples, seed=0)
    return report


def row(clone: Path, seconds: float) -> dict:
    """The figures of the experiment just run in `clone`."""
    metrics = EvalReport.read(clone / "metrics" / "eval.json")
    test = metrics.test
    live = json.loads((clone / "dvclive" / "folds" / "0" / "metrics.json").read_text())  # fold 0's
    figures = {
        "balanced_accuracy": test.balanced_accuracy,
        "ci95": [test.balanced_accuracy_ci95_low, test.balanced_accuracy_ci95_high],
        "accuracy": test.accuracy,
        "macro_auc": test.macro_auc,
        "ece": test.ece,
        "recall": {name: test.per_class[name].recall for name in CLASSES},
        "val_balanced_accuracy": live["best"]["val_balanced_accuracy"],
        "best_step": live["best"]["epoch"],
        "last_train_balanced_accuracy": live["train"]["balanced_accuracy"],
        "test_images": test.images,
        "seconds": round(seconds, 1),
        "commit": run("git", "rev-parse", "--short=10", "HEAD", cwd=clone).strip(),
    }
    if metrics.cv is not None:  # several folds: `test` is their ensemble's; each fold's figures and out-of-fold beside
        figures["cv"] = metrics.cv.model_dump()
    return figures


def seeds_markdown(report: dict) -> str:
    """The table of a run with several seeds: per setting and image set, balanced accuracy as
    mean ± sd over seeds and, against the baseline, the pooled paired difference and interval."""
    sets = list(next(iter(report["paired"].values())))
    head = "| setting | " + " | ".join(f"{name}: bal. acc. | {name}: vs {report['baseline']} (95% CI)" for name in sets)
    head += " | " + " | ".join(f"{name} recall" for name in CLASSES) + " | seeds | time per seed |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for setting, by_set in report["paired"].items():
        cells = []
        for name in sets:
            shown = by_set[name]["balanced_accuracy"]
            spread = "" if shown["b"]["sd"] is None else f" ± {shown['b']['sd']:.3f}"
            cells.append(f"**{shown['b']['mean']:.3f}**{spread}")
            if setting == report["baseline"]:
                cells.append("")
            else:
                low, high = shown["ci95"]
                bold = "**" if shown["excludes_zero"] else ""
                cells.append(f"{bold}{shown['difference']:+.3f}{bold} ({low:+.2f} to {high:+.2f})")
        recalls = by_set["test"]["per_class_recall"]
        cells += [f"{recalls[name]['b']:.2f}" if name in recalls else "-" for name in CLASSES]
        minutes = sum(r["seconds"] for r in report["rows"][setting].values()) / len(report["rows"][setting]) / 60
        seeds = len(report["rows"][setting])
        lines.append(f"| {setting} | " + " | ".join(cells) + f" | {seeds} | {minutes:.1f} min |")
    budget = ", ".join(f"`{k}={v}`" for k, v in report["budget_overrides"].items())
    seeds = ", ".join(map(str, report["seeds"]))
    externals = "; ".join(f"{name}: `{path}`" for name, path in report["external"].items()) or "none"
    return "\n".join(
        [
            mark(report["budget"]),
            f"Budget `{report['budget']}` ({budget}); training seeds {seeds}; commit `{report['commit'][:10]}`; "
            f"{report['machine']}. External sets: {externals}. Balanced accuracy: mean ± sd over the seeds; vs "
            f"{report['baseline']}: the difference of the means with the paired 95% interval (`skinlesion compare`: "
            "the same lesions for both, seeds drawn too), in bold where it excludes 0. Recall: the test split's, "
            "mean over seeds.",
            "",
            *lines,
            mark(report["budget"]),
        ]
    )


def markdown(report: dict) -> str:
    head = (
        "| setting | balanced acc. (95% CI) | acc. | macro AUC | ECE | "
        + " | ".join(CLASSES)
        + " | val bal. acc. | train bal. acc. | time |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    first = {name: by_seed[min(by_seed)] for name, by_seed in report["rows"].items()}  # the first seed's run
    for name, r in first.items():
        low, high = r["ci95"]
        recalls = " | ".join(f"{r['recall'][c]:.2f}" for c in CLASSES)
        lines.append(
            f"| {name} | **{r['balanced_accuracy']:.3f}** ({low:.2f}-{high:.2f}) | {r['accuracy']:.3f} | "
            f"{r['macro_auc']:.3f} | {r['ece']:.3f} | {recalls} | {r['val_balanced_accuracy']:.2f} | "
            f"{r['last_train_balanced_accuracy']:.2f} | {r['seconds'] / 60:.1f} min |"
        )
    budget = ", ".join(f"`{k}={v}`" for k, v in report["budget_overrides"].items())
    return "\n".join(
        [
            mark(report["budget"]),
            f"Budget `{report['budget']}` ({budget}); commit `{report['commit'][:10]}`; {report['machine']}; "
            f"{first and next(iter(first.values()))['test_images']} test images; training seed "
            f"{report['seeds'][0]}. "
            "Per-class columns: test recall.",
            "",
            *lines,
            mark(report["budget"]),
        ]
    )


def write_markdown(path: Path, table: str, marker: str = mark("cpu")) -> None:
    """Replace the block between the two `marker` comments of `path` with `table`, or add it."""
    text = path.read_text() if path.exists() else ""
    if text.count(marker) == 2:
        before, _, rest = text.partition(marker)
        text = before + table + rest.partition(marker)[2]
    else:
        text = (text + "\n" if text else "") + table + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="ISIC-layout folder outside the repository")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--setting", type=parse_setting, action="append", default=[], help="name:key=value,...")
    parser.add_argument("--only", nargs="+", help="run only these settings (by name)")
    parser.add_argument("--out", type=Path, help="JSON report (rewritten after each setting)")
    parser.add_argument("--markdown", type=Path, help="file whose real-data-table block gets the table")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per setting (42, 43, ...); 3 or more "
                        "for the paired table against --baseline")  # fmt: skip
    parser.add_argument("--baseline", default="recipe", help="the setting the others are compared with")
    parser.add_argument(
        "--external", action="append", default=[], metavar="NAME=DIR", help="an external test set (repeatable)"
    )
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of the paired intervals")
    parser.add_argument(
        "--resume", action="store_true", help="keep the finished runs of --out's report and run only the rest"
    )
    args = parser.parse_args()
    externals = {}
    for entry in args.external:
        name, sep, folder = entry.partition("=")
        if not sep or not (Path(folder) / "ISIC_2019_Training_GroundTruth.csv").is_file():
            parser.error(f"--external {entry}: give NAME=DIR, DIR in data.root's layout")
        externals[name] = Path(folder).resolve()
    data_root = args.data_root.resolve()
    if not (data_root / "ISIC_2019_Training_GroundTruth.csv").is_file():
        parser.error(f"--data-root {data_root}: no ISIC_2019_Training_GroundTruth.csv there")
    settings = {**SETTINGS_OF_BUDGET[args.budget], **dict(args.setting)}
    if args.only:
        unknown = set(args.only) - set(settings)
        if unknown:
            parser.error(f"--only: no setting named {sorted(unknown)}; known: {sorted(settings)}")
        settings = {name: settings[name] for name in args.only}
    if args.seeds > 1 and args.baseline not in settings:
        parser.error(f"--baseline {args.baseline} is not among the settings run")
    if args.resume and not args.out:
        parser.error("--resume continues the report of --out: give --out")
    budget = {"data.root": str(data_root), **BUDGETS[args.budget]}
    budget |= {f"+evaluate.external.{name}": str(folder) for name, folder in externals.items()}
    report = {
        "data_root": shown_path(data_root),
        "budget": args.budget,
        "budget_overrides": BUDGETS[args.budget],
        "commit": run("git", "rev-parse", "HEAD", cwd=REPO).strip(),
        "machine": f"{platform.machine()}, {available_cores()} cores, Python {platform.python_version()}",
        "settings": settings,
        "rows": {},
        "seeds": seeds_of(args.seeds),
        "baseline": args.baseline,
        "external": {name: shown_path(folder) for name, folder in externals.items()},
    }
    to_run = list(settings)
    if args.resume and args.out.exists():
        previous = json.loads(args.out.read_text())
        report["rows"] = finished_rows(previous, report, parser)
        # settings this run does not name (--only) keep their rows and stay in the table
        report["settings"] = {**{name: previous["settings"][name] for name in report["rows"]}, **settings}
    run_settings(args, report, budget, externals, to_run)


def finished_rows(previous: dict, report: dict, parser: argparse.ArgumentParser) -> dict:
    """The rows of an earlier, interrupted run of the same data, budget and image sets; a
    setting named in both must not have changed."""
    for key in ("data_root", "budget", "budget_overrides", "external", "baseline"):
        if previous.get(key) != report[key]:
            parser.error(f"--resume: the report's {key} is {previous.get(key)!r}, this run's {report[key]!r}")
    rows = previous.get("rows", {})
    if any(not all(seed.isdigit() for seed in by_seed) for by_seed in rows.values()):
        parser.error("--resume: the report's rows are not kept per seed (written before --resume existed)")
    changed = [
        name for name in rows if name in report["settings"] and previous["settings"][name] != report["settings"][name]
    ]
    if changed:
        parser.error(f"--resume: settings {changed} changed since the report was written")
    return {name: {int(seed): row for seed, row in by_seed.items()} for name, by_seed in rows.items()}


def run_settings(
    args: argparse.Namespace, report: dict, budget: dict, externals: dict[str, Path], to_run: list[str]
) -> None:
    """Every setting with every seed (seeds outermost, so an interrupted run has whole rounds),
    skipping the runs the report holds already; the report, the kept predictions and the
    table are written after each run."""
    kept = args.out.with_name(f"{args.out.stem}_predictions") if args.out else None
    targets = ["evaluate", *(f"evaluate-external@{name}" for name in externals)]
    predictions: dict[str, dict[int, dict[str, pd.DataFrame]]] = {}
    for name, by_seed in report["rows"].items():  # a resumed run's: read back from the kept folders
        for seed in by_seed:
            predictions.setdefault(name, {})[seed] = image_sets(kept / f"{name}-s{seed}", externals)
    with tempfile.TemporaryDirectory(prefix="real-data-") as tmp:
        clone = Path(tmp) / "repo"
        run("git", "clone", "-q", str(REPO), str(clone), cwd=Path(tmp))
        exp_run(clone, "prepare", budget, ["prepare-split"])  # decoded once; settings restore it
        for seed in report["seeds"]:
            for name in to_run:
                overrides = report["settings"][name]
                if seed in report["rows"].get(name, {}):
                    continue
                run_name = f"{name}-s{seed}"
                seconds = exp_run(clone, run_name, {**budget, **overrides, "training.seed": str(seed)}, targets)
                figures = row(clone, seconds)
                report["rows"].setdefault(name, {})[seed] = figures
                predictions.setdefault(name, {})[seed] = image_sets(clone, externals)
                if kept:  # every run's predictions beside the report, for skinlesion compare
                    keep_predictions(kept / run_name, predictions[name][seed])
                print(f"{run_name}: {figures}", file=sys.stderr, flush=True)
                publish_tables(args, report, predictions)


def publish_tables(args: argparse.Namespace, report: dict, predictions: dict) -> None:
    """The report (with the paired comparisons once the baseline has a run) and the markdown table."""
    paired_table = args.seeds > 1 and args.baseline in predictions
    if paired_table:
        report["paired"] = paired(predictions, args.baseline, args.resamples)
    publish(report, args.out)
    if args.markdown:
        table = seeds_markdown(report) if paired_table else markdown(report)
        write_markdown(args.markdown, table, mark(report["budget"]))


if __name__ == "__main__":
    main()
