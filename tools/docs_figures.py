"""Write the figures the docs quote from committed results files, or check that they are current.

    python -m tools.docs_figures            # writes the generated tables
    python -m tools.docs_figures --check    # writes nothing; exits 1 naming each stale table or quote

A figure is either
- in a table between two `<!-- figures:NAME -->` comments of its page, rendered whole from
  its file (written by the command), or
- in running text: the phrase that holds it, rendered from its file, must appear in the page
  as written (bold and line breaks aside). The wording around it is free; a figure changed in
  the page or in its file fails the check, which names the phrase it expected.

Pages: docs/benchmarks.md (benchmarks/results/), docs/cross-validation.md and
docs/experiments.md (the real-image benchmark's reports), docs/comparing.md (`skinlesion
compare`'s report in benchmarks/results/cpu/real_data.json, as the command prints it on the
committed predictions). A figure that no committed file holds (a timing run by hand) says so
where it is quoted. tests/test_docs_figures.py runs the check.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CPU = Path("benchmarks/results/cpu")
H200 = Path("benchmarks/results/h200")
BENCHMARKS = Path("docs/benchmarks.md")
CROSS_VALIDATION = Path("docs/cross-validation.md")
COMPARING = Path("docs/comparing.md")
EXPERIMENTS = Path("docs/experiments.md")


@dataclasses.dataclass(frozen=True)
class Figures:
    """What a page takes from one results file: tables by block name, and phrases of its text."""

    source: Path
    blocks: dict[str, str] = dataclasses.field(default_factory=dict)
    quotes: list[str] = dataclasses.field(default_factory=list)


def marker(name: str) -> str:
    """The comment before and after a generated table."""
    return f"<!-- figures:{name} -->"


def read(path: Path) -> dict:
    return json.loads((REPO / path).read_text(encoding="utf-8"))


def n(value: float, digits: int = 0) -> str:
    """`value` as the docs write it: thousands separated, `digits` decimals."""
    return f"{value:,.{digits}f}"


def row(cells: list[str]) -> str:
    """A Markdown table's row as the docs write one (an empty cell `| |`)."""
    return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"


def table(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join([row(head), "|" + "---|" * len(head), *map(row, rows)])


# ---------------------------------------------------------------- docs/benchmarks.md, CPU


def prepare() -> Figures:
    path = CPU / "prepare.json"
    report = read(path)
    full = report["full_scale"]
    rows = [
        [f"naive loop (one process: PIL open, convert, resize), {report['image']}s to {report['size']} px"]
        + [f"{report['naive_images_per_s']:.1f}"],
        ["project (reduced-scale JPEG decoding with `Image.draft`, one process per core)"]
        + [f"{report['project_images_per_s']:.1f}"],
        ["ratio", f"**{report['speedup']:.1f}x** (target: 3x)"],
    ]
    return Figures(
        path,
        {"prepare": table(["", "images/s"], rows)},
        [
            f"label files ({n(full['images'])} images,",
            f"took {n(full['wall_s'])} s, wrote {n(full['arrays_on_disk_mb'])} MB of arrays",
            f"peaked at {n(full['peak_rss_mb'])} MB",
            f"every written page in memory ({n(full['arrays_on_disk_mb'])} MB at this size",
        ],
    )


def predict_stream() -> Figures:
    path = CPU / "predict_stream.json"
    report = read(path)
    runs = [report["baseline"], report["full"]]
    rows = [
        [n(run["images"]), f"{run['seconds']:.1f} s", f"{run['images_per_s']:.1f}", f"{n(run['peak_rss_mb'])} MB"]
        for run in runs
    ]
    return Figures(
        path,
        {"predict-stream": table(["images", "time", "images/s", "peak resident memory"], rows)},
        [
            f"DenseNet121 at {report['image_size']} px",
            f"once on {n(runs[0]['images'])} images and once on {n(runs[1]['images'])}",
            f"{report['images_ratio']:g} times the images, {report['peak_rss_ratio']:.2f} times the peak memory",
            f"Most of the {n(runs[0]['peak_rss_mb'])} MB",
        ],
    )


def onnx_runtime() -> Figures:
    path = CPU / "onnx_runtime.json"
    report = read(path)
    large, small, imports, whole = report["224px"], report["64px"], report["import_s"], report["predict_end_to_end"]

    def per_image(figures: dict, key: str) -> list[str]:
        return [f"{figures['torch'][key]:.1f} ms", f"{figures['onnxruntime'][key]:.1f} ms"]

    rows = [
        ["CPU time per image, 224 px", *per_image(large, "cpu_ms"), f"**{large['cpu_ratio']:.2f}x**"],
        ["wall time per image, 224 px", *per_image(large, "wall_ms"), f"{large['wall_ratio']:.2f}x"],
        ["CPU time per image, 64 px", *per_image(small, "cpu_ms"), f"{small['cpu_ratio']:.2f}x"],
        ["import of the classifier's module, fresh process (median of 3)"]
        + [f"{imports['torch']:.2f} s", f"{imports['onnxruntime']:.2f} s", f"{imports['ratio']:.0f}x"],
        [f"`skinlesion predict` of {whole['files']} files at {whole['image_size']} px, whole process"]
        + [f"{whole['torch_s']:.2f} s", f"{whole['onnxruntime_s']:.2f} s", f"{whole['ratio']:.1f}x"],
    ]
    torch = report["torch"].split("+")[0]
    return Figures(
        path,
        {"onnx-runtime": table(["", "torch", "ONNX Runtime", "ratio"], rows)},
        [
            f"on the same {large['images']} decoded images, in batches of {report['batch_size']}",
            f"torch {torch} with {report['torch_threads']} threads, ONNX Runtime {report['onnxruntime']}",
        ],
    )


def _clients(setting: dict) -> dict[int, dict]:
    """A serve setting's runs by number of clients."""
    return {int(key.split("_")[0]): run for key, run in setting.items() if key.endswith("_clients")}


def _setting_name(setting: dict) -> str:
    return "no batching" if setting["max_batch"] == 1 else f"batching, `--max-batch {setting['max_batch']}`"


def serve() -> Figures:
    path = CPU / "serve.json"
    report = read(path)
    settings = report["settings"]
    clients = sorted(_clients(settings["no_batching"]))
    head = ["", *[f"{count} client{'s' if count > 1 else ''}" for count in clients]]
    rows = [
        [f"{_setting_name(setting)}: images/s (p50)"]
        + [f"{run['images_per_s']:.2f} ({n(run['p50_ms'])} ms)" for _, run in sorted(_clients(setting).items())]
        for setting in settings.values()
    ]
    for name, speedups in report["batching_speedup"].items():
        shown = [f"**{ratio:.2f}**" if ratio > 1 else f"{ratio:.2f}" for ratio in speedups.values()]
        rows.append([f"batching {settings[name]['max_batch']} / no batching", *shown])
    return Figures(path, {"serve": table(head, rows)}, serve_quotes(report))


def serve_quotes(report: dict) -> list[str]:
    settings = report["settings"]
    by_batch = report["library_images_per_s_by_batch"]
    runs = [run for setting in settings.values() for run in _clients(setting).values()]
    ratios = [run["ratio_to_library"] for run in runs]
    one_client_cost = _clients(settings["batching_8"])[1]["p50_ms"] - _clients(settings["no_batching"])[1]["p50_ms"]
    errors = sum(run["errors"] for run in runs)
    first = sum(run["requests"] for run in _clients(settings["batching_8"]).values())
    return [
        f"{report['requests_per_setting']} uploads of",
        f"The library gave {by_batch['1']:.2f} images/s in batches of 1, {by_batch['8']:.2f} in batches of 8 "
        f"and {by_batch['32']:.2f} in batches of 32",
        f"The server reaches {min(ratios):.2f} to {max(ratios):.2f} of the library's best",
        f"batching cost {one_client_cost:.0f} ms at the median in this run",
        f"the {settings['batching_8']['max_wait_ms']:g} ms wait",
        "No request failed." if errors == 0 else f"{errors} requests failed.",
        f"the first {first} requests raised it from {n(settings['batching_8']['rss_mb_before'])} MB to "
        f"{n(settings['batching_8']['rss_mb_after'])} MB with batches of up to 8 and to "
        f"{n(settings['batching_32']['rss_mb_after'])} MB with up to 32 (without batching, to "
        f"{n(settings['no_batching']['rss_mb_after'])} MB)",
    ]


def serve_soak() -> Figures:
    path = CPU / "serve_soak.json"
    report = read(path)
    settings = report["settings"]
    rows = []
    for setting in settings.values():
        (run,) = _clients(setting).values()
        rows.append(
            [_setting_name(setting), f"{run['images_per_s']:.1f}"]
            + [f"{n(run['p50_ms'])} / {n(run['p99_ms'])} ms"]
            + [f"{n(setting['rss_mb_before'])} MB, {n(setting['rss_mb_after'])} MB", str(run["errors"])]
        )
    ((speedup,),) = (ratios.values() for ratios in report["batching_speedup"].values())
    rows.append(["ratio", f"**{speedup:.2f}x**", "", "", ""])
    head = ["", "images/s", "p50 / p99", "resident memory before, after", "errors"]
    batching, plain = settings["batching_32"], settings["no_batching"]
    requests = report["requests_per_setting"]
    minutes = requests / _clients(plain)[32]["images_per_s"] / 60
    return Figures(
        path,
        {"serve-soak": table(head, rows)},
        [
            f"{n(requests)} requests take about {minutes:.0f} minutes",
            f"Over {n(requests)} requests at 64 px the server gained "
            f"{batching['rss_mb_after'] - batching['rss_mb_before']:.0f} MB with batching and "
            f"{plain['rss_mb_after'] - plain['rss_mb_before']:.0f} MB without",
        ],
    )


def kmeans() -> Figures:
    path = CPU / "kmeans.json"
    report = read(path)
    size = report["image_size"]
    return Figures(
        path,
        quotes=[
            f"9,000 NV images at {size} px",
            f"cut to 3,500 in {report['project_s_9000_to_3500']:.1f} s",
            f"the same step took {report['project_s_1000']:.2f} s against {report['naive_pixels_kmeans_s_1000']:.1f} s "
            f"for K-Means on the flattened {size}x{size}x3 pixels ({report['speedup_at_baseline_size']:.0f}x)",
        ],
    )


def dvc_noop() -> Figures:
    path = CPU / "dvc_noop.json"
    report = read(path)
    held = {
        "folder_of_jpegs": f"{n(report['images'])} JPEGs in `ISIC_2019_Training_Input/`",
        "one_zip": "one `ISIC_2019_Training_Input.zip`",
    }
    rows = [
        [text, *(f"{report[key][figure]:.2f} s" for figure in ("status_s", "noop_repro_s"))]
        for key, text in held.items()
    ]
    return Figures(
        path,
        {"dvc-noop": table(["images held as", "`dvc status`", "no-op `dvc repro`"], rows)},
        [
            f"the whole pipeline on {n(report['images'])} images",
            f"costs DVC {report['status_folder_over_zip']:.2f}x the time of one zip",
        ],
    )


def _throughput_row(report: dict, run: str) -> str:
    """A row of the CPU training-throughput table: project settings, run, and the figures."""
    setting = f"`augment_on: {report['augment_on']}`"
    if report["compile"] != "none":
        setting += f", `compile: {report['compile']}`"
    cells = [setting, run, f"{report['baseline_images_per_s']:.1f}", f"{report['project_images_per_s']:.1f}"]
    cells += [f"{report['speedup']:.2f}", n(report["project_loader_images_per_s"])]
    cells += [f"{report['model_step_images_per_s']:.1f}", f"{report['loader_over_model_step']:.0f}x"]
    return row(cells)


def train_throughput() -> Figures:
    """Run 1 of the table (its reports are kept; run 2's are not)."""
    names = ["loader", "device", "device_compiled"]
    reports = {name: read(CPU / f"train_throughput_augment_on_{name}.json") for name in names}
    loader_gain = reports["device"]["project_loader_images_per_s"] / reports["loader"]["project_loader_images_per_s"]
    return Figures(
        CPU / "train_throughput_augment_on_*.json",
        quotes=[_throughput_row(report, "1") for report in reports.values()]
        + [
            f"`torch.compile` (inductor) gives {reports['device_compiled']['speedup']:.2f}x",
            f"The loader delivers {loader_gain:.0f}x more images per second in run 1",
        ],
    )


def augment() -> Figures:
    path = CPU / "augment.json"
    report = read(path)
    return Figures(
        path,
        quotes=[
            f"{report['per_image_images_per_s']:.1f} against {report['batched_images_per_s']:.1f} images/s "
            f"(ratio {report['ratio']:.2f})"
        ],
    )


# ---------------------------------------------------------------- docs/benchmarks.md, H200


# The first two runs' reports predate the benchmark's recording of precision and loader workers:
# their settings as the runs were made (commit 9cf8235).
EARLY_RUNS = {"run1": ("bf16", 8), "run2": ("bf16", 16)}
H200_RUNS = [
    "run1-train_throughput",
    "run1-train_throughput_b128",
    "run2-train_throughput",
    "run2-train_throughput_b128",
    "run3-train_throughput_fp32",
    "run4-train_throughput_fp32_w8",
]


def h200_machine() -> Figures:
    path = H200 / "run1-gpu.txt"
    versions = dict(re.findall(r"(torch|torchvision|cpus) (\S+)", (REPO / path).read_text(encoding="utf-8")))
    torchvision = versions["torchvision"].split("+")[0]
    return Figures(path, quotes=[f"torch {versions['torch']}, torchvision {torchvision}, {versions['cpus']} CPU cores"])


def h200_model_step() -> Figures:
    path = H200 / "run2-model_step.json"
    rows = read(path)["rows"]
    precision = {"float32": "fp32", "bfloat16": "bf16 autocast"}
    layout = {"contiguous_format": "contiguous", "channels_last": "channels_last"}
    columns = list(dict.fromkeys((row["precision"], row["layout"]) for row in rows))
    by_batch: dict[int, dict] = {}
    for row in rows:
        by_batch.setdefault(row["batch"], {})[(row["precision"], row["layout"])] = row["images_per_s"]
    lines = []
    for batch, figures in by_batch.items():
        best = max(figures.values())
        lines.append([str(batch)] + [f"**{n(v)}**" if v == best else n(v) for v in map(figures.get, columns)])
    head = ["batch", *[f"{precision[p]}, {layout[lay]}" for p, lay in columns]]
    return Figures(path, {"h200-model-step": table(head, lines)})


def h200_train_throughput() -> Figures:
    reports = {name: read(H200 / f"{name}.json") for name in H200_RUNS}
    rows = []
    for name, report in reports.items():
        run = name.split("-")[0]
        precision, workers = EARLY_RUNS.get(run) or (report["precision"], report["loader_workers"])
        rows.append(
            [run.removeprefix("run"), f"batch {report['batch_size']}, {precision}, {workers} workers"]
            + [n(report[key]) for key in ("baseline_images_per_s", "project_images_per_s")]
            + [f"{report['speedup']:.2f}"]
            + [n(report[key]) for key in ("project_loader_images_per_s", "model_step_images_per_s")]
            + [f"{report['loader_over_model_step']:.2f}"]
        )
    head = ["run", "project settings", "baseline img/s", "project img/s", "ratio", "loader alone img/s"]
    head += ["step alone img/s", "loader / step"]
    return Figures(
        H200 / "run*-train_throughput*.json", {"h200-train-throughput": table(head, rows)}, h200_quotes(reports)
    )


def h200_quotes(reports: dict[str, dict]) -> list[str]:
    speedups = [report["speedup"] for report in reports.values()]
    small = [report for report in reports.values() if report["batch_size"] == 32]
    large = [report for report in reports.values() if report["batch_size"] == 128]
    loader_over_step = [report["loader_over_model_step"] for report in small]
    large_loader = sum(report["project_loader_images_per_s"] for report in large) / len(large)
    large_step = [report["model_step_images_per_s"] for report in large]
    baselines = [report["baseline_images_per_s"] for report in small]
    run3 = reports["run3-train_throughput_fp32"]
    return [
        f"(ratios {min(speedups):.2f}-{max(speedups):.2f}, target 2x)",
        f"the loader was {min(loader_over_step):.1f}-{max(loader_over_step):.1f}x the model step",
        f"At batch 128 the loader (~{round(large_loader, -1):.0f} images/s) caps the loop well below the step "
        f"(~{n(round(min(large_step), -2))}-{n(round(max(large_step), -2))})",
        f"(run 3: loader {n(run3['project_loader_images_per_s'])} and step {n(run3['model_step_images_per_s'])} "
        f"alone, {n(run3['project_images_per_s'])} together)",
        f"({min(baselines):.0f}-{max(baselines):.0f} images/s for the same configuration)",
    ]


def h200_epoch() -> Figures:
    path = H200 / "run1-gpu_epoch.json"
    report = read(path)
    first, last = report["history"][0], report["history"][-1]
    return Figures(
        path,
        quotes=[
            f"{report['wall_s']:.1f} s wall for {report['epochs']} epochs of {n(report['train_images'])} images "
            f"plus validation of {n(report['val_images'])} and model start-up "
            f"({report['train_images_per_s_incl_val_and_startup']:.0f} images/s all included); "
            f"loss fell from {first['train/loss']:.2f} to {last['train/loss']:.2f} and validation balanced "
            f"accuracy rose from {first['val/balanced_accuracy']:.2f} to {last['val/balanced_accuracy']:.2f}"
        ],
    )


# ---------------------------------------------------------------- the real-image benchmark's reports


def cross_validation() -> Figures:
    path = CPU / "real_data_cv.json"
    rows = read(path)["rows"]
    single, ensemble = rows["recipe"], rows["five-folds"]
    folds = [fold["test"]["balanced_accuracy"] for fold in ensemble["cv"]["folds"].values()]
    return Figures(
        path,
        quotes=[
            f"the single split's {single['balanced_accuracy']:.3f} lay above all five fold models "
            f"({min(folds):.2f} to {max(folds):.2f}, mean {ensemble['cv']['test_mean']['balanced_accuracy']:.3f})",
            f"ranked best (macro AUC {ensemble['macro_auc']:.3f})",
            f"few test images ({ensemble['balanced_accuracy']:.3f})",
        ],
    )


def _metadata_against_recipe() -> dict[str, dict]:
    """skinlesion compare's reports of the metadata setting's seeds against the recipe's, by image set."""
    return read(CPU / "real_data.json")["paired"]["metadata"]


def experiments() -> Figures:
    sets = _metadata_against_recipe()
    test, external = sets["test"]["balanced_accuracy"], sets["mini"]["balanced_accuracy"]
    low, high = test["ci95"]
    return Figures(
        CPU / "real_data.json",
        quotes=[
            f"{test['difference']:+.3f} balanced accuracy on the dev set's test split, paired interval "
            f"{low:+.2f} to {high:+.2f}; {external['difference']:+.3f} on the external set"
        ],
    )


def comparing() -> Figures:
    """The example output: what `skinlesion compare --a 'recipe-s*' --b 'metadata-s*'` prints in
    benchmarks/results/cpu/real_data_predictions (the benchmark stored its report)."""
    from skinlesion.evaluation.compare_text import as_text

    sets = _metadata_against_recipe()
    test, external = sets["test"], sets["mini"]
    recipe = test["balanced_accuracy"]["a"]["runs"]
    low, high = test["balanced_accuracy"]["ci95"]
    return Figures(
        CPU / "real_data.json",
        {"compare-metadata": f"```\n{as_text(sets)}\n```"},
        [
            f"moved the mean balanced accuracy by {test['balanced_accuracy']['difference']:+.4f} on the test split",
            f"three seeds alone lie {max(recipe) - min(recipe):.3f} apart ({min(recipe):.3f} to {max(recipe):.3f})",
            f"runs from {low:+.4f} to {high:+.4f}",
            f"the other {external['images']}",
        ],
    )


PAGES: dict[Path, list[Callable[[], Figures]]] = {
    BENCHMARKS: [
        prepare,
        predict_stream,
        onnx_runtime,
        serve,
        serve_soak,
        kmeans,
        dvc_noop,
        train_throughput,
        augment,
        h200_machine,
        h200_model_step,
        h200_train_throughput,
        h200_epoch,
    ],
    CROSS_VALIDATION: [cross_validation],
    COMPARING: [comparing],
    EXPERIMENTS: [experiments],
}


# ---------------------------------------------------------------- writing and checking


def with_blocks(page: str, blocks: dict[str, str]) -> str:
    """`page` with each block's text between its two comments; a ValueError naming a block
    whose comments are not there twice."""
    for name, text in blocks.items():
        mark = marker(name)
        if page.count(mark) != 2:
            raise ValueError(f"no table {name}: the page needs two {mark} comments around it")
        before, _, rest = page.partition(mark)
        page = f"{before}{mark}\n{text}\n{mark}{rest.partition(mark)[2]}"
    return page


def plain(text: str) -> str:
    """Text as a quote is matched: without bold, every run of whitespace one space."""
    return re.sub(r"\s+", " ", text.replace("**", ""))


def missing_quotes(page: str, quotes: list[str]) -> list[str]:
    """The quotes that `page` does not hold."""
    text = plain(page)
    return [quote for quote in quotes if plain(quote) not in text]


def check(page_path: Path, page: str, figures: list[Figures]) -> list[str]:
    """What in `page` disagrees with its files: a table out of date, a quote not found."""
    problems = []
    for group in figures:
        try:
            current = with_blocks(page, group.blocks)
        except ValueError as error:
            problems.append(f"{page_path}: {error}")
            continue
        problems += [
            f"{page_path}: table {name} differs from {group.source}"
            for name in group.blocks
            if current.split(marker(name))[1] != page.split(marker(name))[1]
        ]
        problems += [
            f"{page_path}: not found (from {group.source}): {quote!r}" for quote in missing_quotes(page, group.quotes)
        ]
    return problems


def write(path: Path, page: str, figures: list[Figures]) -> str:
    """Write the page's tables (those whose comments it has: check names the others); its new text."""
    updated = page
    for group in figures:
        with contextlib.suppress(ValueError):
            updated = with_blocks(updated, group.blocks)
    if updated != page:
        (REPO / path).write_text(updated, encoding="utf-8")
        print(f"wrote {path}")
    return updated


def render() -> dict[Path, list[Figures]]:
    return {path: [figures() for figures in functions] for path, functions in PAGES.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a figure is stale")
    args = parser.parse_args(argv)
    rendered = render()
    problems = []
    for path, figures in rendered.items():
        page = (REPO / path).read_text(encoding="utf-8")
        if not args.check:
            page = write(path, page, figures)
        problems += check(path, page, figures)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
