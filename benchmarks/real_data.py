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
import time
from pathlib import Path

from benchmarks import publish
from skinlesion.classes import CLASSES
from skinlesion.cores import available_cores

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


def exp_run(clone: Path, name: str, overrides: dict[str, str], target: str) -> float:
    """`dvc exp run` of `target` with `overrides`; the clone is reset first. Returns seconds."""
    run("git", "checkout", "--", ".", cwd=clone)
    flags = [arg for key, value in overrides.items() for arg in ("-S", f"{key}={value}")]
    start = time.perf_counter()
    run(sys.executable, "-m", "dvc", "exp", "run", "--name", name, *flags, target, cwd=clone)
    return time.perf_counter() - start


def row(clone: Path, seconds: float) -> dict:
    """The figures of the experiment just run in `clone`."""
    metrics = json.loads((clone / "metrics" / "eval.json").read_text())
    test = metrics["test"]
    live = json.loads((clone / "dvclive" / "folds" / "0" / "metrics.json").read_text())  # fold 0's
    figures = {
        "balanced_accuracy": test["balanced_accuracy"],
        "ci95": [test["balanced_accuracy_ci95_low"], test["balanced_accuracy_ci95_high"]],
        "accuracy": test["accuracy"],
        "macro_auc": test["macro_auc"],
        "ece": test["ece"],
        "recall": {name: test["per_class"][name]["recall"] for name in CLASSES},
        "val_balanced_accuracy": live["best"]["val_balanced_accuracy"],
        "best_step": live["best"]["epoch"],
        "last_train_balanced_accuracy": live["train"]["balanced_accuracy"],
        "test_images": test["images"],
        "seconds": round(seconds, 1),
    }
    if "cv" in metrics:  # several folds: `test` is their ensemble's; each fold's figures and out-of-fold beside
        figures["cv"] = metrics["cv"]
    return figures


def markdown(report: dict) -> str:
    head = (
        "| setting | balanced acc. (95% CI) | acc. | macro AUC | ECE | "
        + " | ".join(CLASSES)
        + " | val bal. acc. | train bal. acc. | time |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in report["rows"].items():
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
            MARK,
            f"Budget `{report['budget']}` ({budget}); commit `{report['commit'][:10]}`; {report['machine']}; "
            f"{report['rows'] and next(iter(report['rows'].values()))['test_images']} test images. "
            "Per-class columns: test recall.",
            "",
            *lines,
            MARK,
        ]
    )


def write_markdown(path: Path, table: str) -> None:
    text = path.read_text() if path.exists() else ""
    if text.count(MARK) == 2:
        before, _, rest = text.partition(MARK)
        text = before + table + rest.partition(MARK)[2]
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
    args = parser.parse_args()
    data_root = args.data_root.resolve()
    if not (data_root / "ISIC_2019_Training_GroundTruth.csv").is_file():
        parser.error(f"--data-root {data_root}: no ISIC_2019_Training_GroundTruth.csv there")
    settings = {**SETTINGS, **dict(args.setting)}
    if args.only:
        unknown = set(args.only) - set(settings)
        if unknown:
            parser.error(f"--only: no setting named {sorted(unknown)}; known: {sorted(settings)}")
        settings = {name: settings[name] for name in args.only}
    budget = {"data.root": str(data_root), **BUDGETS[args.budget]}
    report = {
        "data_root": str(data_root),
        "budget": args.budget,
        "budget_overrides": BUDGETS[args.budget],
        "commit": run("git", "rev-parse", "HEAD", cwd=REPO).strip(),
        "machine": f"{platform.machine()}, {available_cores()} cores, Python {platform.python_version()}",
        "settings": settings,
        "rows": {},
    }
    with tempfile.TemporaryDirectory(prefix="real-data-") as tmp:
        clone = Path(tmp) / "repo"
        run("git", "clone", "-q", str(REPO), str(clone), cwd=Path(tmp))
        exp_run(clone, "prepare", budget, "prepare-split")  # decoded once; settings restore it
        for name, overrides in settings.items():
            seconds = exp_run(clone, name, {**budget, **overrides}, "evaluate")
            report["rows"][name] = row(clone, seconds)
            print(f"{name}: {report['rows'][name]}", file=sys.stderr, flush=True)
            publish(report, args.out)
    if args.markdown:
        write_markdown(args.markdown, markdown(report))


if __name__ == "__main__":
    main()
