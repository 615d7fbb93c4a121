"""The `skinlesion` command: the tools around the pipeline (the stages run through dvc repro).
Its arguments and what it prints live here; the work, in the library. Building the parser
imports no torch, so `skinlesion --help` answers at once.

skinlesion predict IMAGE ... [--model models/model.pt|model.onnx] [--out FILE] [--isic-submission FILE]
skinlesion serve [--model models/model.pt|model.onnx] [--host 127.0.0.1] [--port 8000] [--max-batch 32]
skinlesion export --format onnx [--model models/model.pt] [--out models/model.onnx]
skinlesion compare A B [C ...] | --a A1 A2 ... --b B1 B2 ... [--json | --markdown]
skinlesion import-isic [--test] [--out data/isic2019]
skinlesion check-params [params.yaml | profiles/NAME.yaml ...] [--onto params.yaml]
skinlesion run-profile NAME [dvc exp run arguments ...]
skinlesion params-schema [--out params.schema.json]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from skinlesion.model.info import TTA

if TYPE_CHECKING:
    from skinlesion.predict.records import Result

log = logging.getLogger(__name__)


def _predict(args: argparse.Namespace) -> int:
    """Predict args.images, printing results batch by batch (the library writes --out and
    --isic-submission as they come); returns 1 if any file could not be read."""
    _model_file_exists(args.model)
    from tqdm import tqdm

    import skinlesion.predict.run as library
    from skinlesion.predict.records import Failure

    values = {"age_approx": args.age, "sex": args.sex, "anatom_site_general": args.site}
    with _parameters_as_flags():
        classify = library.load_classifier(args.model, device=args.device, tta=args.tta, cam_dir=args.cam)
        plan = library.plan(
            classify,
            args.images,
            model_path=args.model,
            metadata_file=args.metadata,
            metadata_values=values,
            results_path=args.out,
            submission_path=args.isic_submission,
        )
        predicted = failed = 0
        started, printer = time.perf_counter(), _ResultPrinter(args.json, args.top)
        # a progress bar on a terminal only
        with tqdm(total=len(plan.remaining), unit="image", disable=None, file=sys.stderr) as progress:
            for results in library.predict(plan, batch_size=args.batch_size):
                for result in results:
                    if isinstance(result, Failure):
                        failed += 1
                        print(f"{result.image}: error: {result.error}", file=sys.stderr)
                    else:
                        predicted += 1
                printer.show(results)
                progress.update(len(results))
    printer.close()
    seconds = time.perf_counter() - started
    log.info(
        "predicted %d images (%d could not be read) in %.1f s: %.1f images/s",
        predicted,
        failed,
        seconds,
        predicted / max(seconds, 1e-9),
    )
    return 1 if failed else 0


# the predict library names its parameters; the command, the flags that set them. `device`
# is a parameter only where a message begins with it ("device is cuda, but ..."), elsewhere a word
_FLAGS = {
    "device": "--device",
    "cam_dir": "--cam",
    "metadata_file": "--metadata",
    "metadata_values": "--age/--sex/--site",
}
_PARAMETER = re.compile(r"^device(?= is )|\b(?:cam_dir|metadata_file|metadata_values)\b")


def _as_flags(message: str) -> str:
    """A predict library message in the command's words: each parameter as the flag that sets it."""
    return _PARAMETER.sub(lambda match: _FLAGS[match[0]], message)


class _FlagNames(logging.Filter):
    """Logs the predict library's messages with the flags for its parameters."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.name.startswith("skinlesion.predict."):
            record.msg = _as_flags(record.msg)
        return True


@contextlib.contextmanager
def _parameters_as_flags() -> Iterator[None]:
    """Within it, the predict library's errors and log messages name the flags, not its parameters."""
    from skinlesion.errors import DataError, DeviceError

    handlers, names = logging.getLogger().handlers, _FlagNames()
    for handler in handlers:
        handler.addFilter(names)
    try:
        yield
    except (DataError, DeviceError) as error:
        error.args = (_as_flags(str(error)),)
        raise
    finally:
        for handler in handlers:
            handler.removeFilter(names)


class _ResultPrinter:
    """Prints results as they come: a line per image (its `top` classes), or with `as_json` one
    JSON array written element by element, so nothing is held back until the end."""

    def __init__(self, as_json: bool, top: int):
        self.as_json, self.top, self.count = as_json, top, 0

    def show(self, results: list[Result]) -> None:
        from skinlesion.predict.records import Failure

        for result in results:
            shown = {"image": result.image}
            if isinstance(result, Failure):
                shown["error"] = result.error
            else:
                top = result.top(self.top)
                shown["predictions"] = [{"class": name, "probability": round(p, 4)} for name, p in top]
                if result.metadata is not None:
                    shown["metadata"] = result.metadata
            if self.as_json:
                sys.stdout.write(("[\n" if self.count == 0 else ",\n") + json.dumps(shown, indent=2))
            elif "predictions" in shown:
                print(
                    shown["image"]
                    + "  "
                    + "  ".join(f"{p['class']} {p['probability']:.3f}" for p in shown["predictions"])
                )
            self.count += 1
        sys.stdout.flush()

    def close(self) -> None:
        if self.as_json:
            print("[]" if self.count == 0 else "\n]")


def _positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def _add_predict(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "predict",
        help="classify new images with a trained model",
        description="Exit status: 0 all images predicted, 1 some files could not be read (named on stderr), "
        "2 usage or bad input.",
    )
    parser.add_argument(
        "images", type=Path, nargs="+", help="image files (JPEG, PNG, ...), folders of them, or zip archives of them"
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=Path("models/model.pt"),
        help="a model file, or its export (.onnx, run by ONNX Runtime without torch: skinlesion export)",
    )
    parser.add_argument("--top", type=_positive, default=3, help="classes shown per image")
    parser.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    parser.add_argument(
        "--out",
        type=Path,
        help="also write every image's probabilities, as they come, to a .csv or .jsonl file; "
        "rerun with the same file to continue an interrupted run",
    )
    parser.add_argument(
        "--isic-submission",
        type=Path,
        help="also write the ISIC 2019 submission CSV (image, MEL, ..., SCC, UNK; UNK from the unknown score), "
        "continued by a rerun as --out",
    )
    parser.add_argument("--cam", type=Path, help="folder for Grad-CAM overlays of the predicted class")
    parser.add_argument(
        "--device", default="auto", choices=["auto", "cuda", "mps", "cpu"], help="auto: CUDA, then MPS, then CPU"
    )
    parser.add_argument("--batch-size", type=_positive, default=32, help="images per forward pass")
    parser.add_argument(
        "--tta", default="none", choices=list(get_args(TTA)), help="test-time augmentation, as evaluate.tta"
    )
    parser.add_argument(
        "--metadata",
        type=Path,
        help="for a model trained with metadata: a CSV with columns image, age_approx, anatom_site_general, sex "
        "(as ISIC's metadata files), matched to the files by name without extension",
    )
    parser.add_argument("--age", help="approximate age in years of every image (instead of --metadata)")
    parser.add_argument("--sex", help="male or female, for every image")
    parser.add_argument("--site", help="anatomical site of every image, as ISIC writes it (e.g. 'head/neck')")
    parser.set_defaults(run=_predict)


def _serve(args: argparse.Namespace) -> int:
    """Serve args.model over HTTP until SIGINT or SIGTERM (docs/serve.md)."""
    from skinlesion.errors import DataError
    from skinlesion.serve.model import require_serve_extra

    require_serve_extra()
    if args.max_wait_ms < 0 or args.max_upload_mb <= 0:
        raise DataError(
            f"--max-wait-ms {args.max_wait_ms:g} must be 0 or more, --max-upload-mb {args.max_upload_mb:g} more than 0"
        )
    _model_file_exists(args.model)
    from skinlesion.cores import available_cores
    from skinlesion.serve.app import ServeSettings, serve
    from skinlesion.serve.batching import Batching
    from skinlesion.serve.model import ServedModel

    with _parameters_as_flags():
        served = ServedModel.load(args.model, device=args.device, tta=args.tta)
    settings = ServeSettings(
        batching=Batching(max_batch=args.max_batch, max_wait=args.max_wait_ms / 1000),
        max_body=int(args.max_upload_mb * 2**20),
        threads=args.threads or available_cores(),
    )
    serve(served, settings, host=args.host, port=args.port)
    return 0


def _add_serve(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "serve",
        help='serve a model over HTTP on 127.0.0.1 (needs: pip install -e ".[serve]")',
        description="Open Inference Protocol (KServe v2) routes, POST /predict for an uploaded image, /metrics, "
        "and an upload page at /; concurrent requests share forward passes. SIGTERM lets requests in flight "
        "finish. docs/serve.md.",
    )
    parser.add_argument(
        "--model", type=Path, default=Path("models/model.pt"), help="a model file, or its export (.onnx: no torch)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on; any other lets other machines in")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument("--max-batch", type=_positive, default=32, help="images per forward pass (1: no batching)")
    parser.add_argument(
        "--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests (0: no batching)"
    )
    parser.add_argument("--max-upload-mb", type=float, default=20.0, help="the largest request body accepted")
    parser.add_argument("--threads", type=_positive, help="threads that decode uploads (default: the CPU cores)")
    parser.add_argument(
        "--device", default="auto", choices=["auto", "cuda", "mps", "cpu"], help="auto: CUDA, then MPS, then CPU"
    )
    parser.add_argument(
        "--tta", default="none", choices=list(get_args(TTA)), help="test-time augmentation, on both inference routes"
    )
    parser.set_defaults(run=_serve)


def _import_isic(args: argparse.Namespace) -> int:
    from skinlesion.data.official import import_files, import_test_files, verify_labels

    if args.test:
        # no md5 of the official test files is recorded here; DVC keeps each file's md5 in its .dvc file
        import_test_files(args.base_url.rstrip("/"), args.out or Path("data/isic2019-test"))
        return 0
    args.out = args.out or Path("data/isic2019")
    import_files(args.base_url.rstrip("/"), args.out)
    if not args.no_verify:
        verify_labels(args.out)
        logging.getLogger(__name__).info("the CSVs are the official ISIC 2019 release")
    return 0


def _add_import_isic(commands: argparse._SubParsersAction) -> None:
    from skinlesion.data.official import OFFICIAL_URL

    parser = commands.add_parser("import-isic", help="dvc import-url of the official ISIC 2019 files")
    parser.add_argument(
        "--out", type=Path, help="folder to import into: data/isic2019 (data.root), with --test data/isic2019-test"
    )
    parser.add_argument(
        "--test", action="store_true", help="the official test images and metadata (and ground truth, if served)"
    )
    parser.add_argument("--base-url", default=OFFICIAL_URL, help="where the three files are served")
    parser.add_argument("--no-verify", action="store_true", help="skip the md5 check of the CSVs")
    parser.set_defaults(run=_import_isic)


def _model_file_exists(model: Path) -> None:
    """Before torch is imported (seconds): a FileNotFoundError that says how to get the model."""
    if model.is_file():
        return
    if model.suffix.lower() == ".onnx":
        how = f"skinlesion export --model {model.with_suffix('.pt')} writes it"
    else:
        how = "train one with `dvc repro` (docs/getting-started.md), or `dvc pull` it from a remote (docs/remote.md)"
    raise FileNotFoundError(f"{model}: model file not found; {how}")


def _export(args: argparse.Namespace) -> int:
    from skinlesion.predict.onnx_classifier import import_onnxruntime  # no torch

    import_onnxruntime("skinlesion export --format onnx")  # the extra first: without it no model file helps
    _model_file_exists(args.model)
    from skinlesion.export.onnx_graph import export_onnx

    export_onnx(args.model, args.out or args.model.with_suffix(".onnx"))
    return 0


def _add_export(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export",
        help='write a model as ONNX, to run without this pipeline or torch (needs: pip install -e ".[onnx]")',
        description="One graph with a dynamic batch size, from normalised images (and encoded metadata) to class "
        "probabilities with the model's temperature; a fold ensemble's members averaged in it. The preprocessing "
        "it expects is in the file's metadata (docs/predict.md). Checked against torch before it is written.",
    )
    parser.add_argument("--format", choices=["onnx"], default="onnx", help="the export format")
    parser.add_argument("--model", type=Path, default=Path("models/model.pt"), help="the model file to export")
    parser.add_argument("--out", type=Path, help="the exported file (default: the model's path with .onnx)")
    parser.set_defaults(run=_export)


def _compare(args: argparse.Namespace) -> int:
    from skinlesion.errors import DataError
    from skinlesion.evaluation.compare_text import as_markdown, as_text, not_one_setting, params_lines
    from skinlesion.evaluation.runs import compare_sources, params_differences, resolve

    if args.runs and (args.a or args.b):
        raise DataError("compare: give runs A B [C ...] (each against A), or two groups --a ... --b ..., not both")
    if bool(args.a) != bool(args.b):
        raise DataError(f"compare: --{'b' if args.a else 'a'} is missing (a group of runs on each side)")
    if args.runs:
        baseline, *others = resolve(args.runs, args.repo)
        if not others:
            raise DataError(f"compare: {' '.join(args.runs)} names one run ({baseline.name}); give at least two")
        pairs = [([baseline], [other]) for other in others]
    else:
        pairs = [(resolve(args.a, args.repo), resolve(args.b, args.repo))]
    results = [compare_sources(a, b, resamples=args.resamples, seed=args.seed) for a, b in pairs]
    differences = [params_differences(a, b) for a, b in pairs]
    for warning in {line: None for params in differences for line in not_one_setting(params)}:
        log.warning(warning)
    if args.json:
        print(json.dumps([{"a": [s.name for s in a], "b": [s.name for s in b], "params": params, "sets": sets}
                          for (a, b), params, sets in zip(pairs, differences, results)], indent=2))  # fmt: skip
    else:
        shown = as_markdown if args.markdown else as_text
        blocks = [
            "\n".join([*params_lines(params, markdown=args.markdown), shown(sets)])
            for params, sets in zip(differences, results)
        ]
        print("\n\n".join(blocks))
    return 0


def _add_compare(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "compare",
        help="did a change help? two runs, or two groups of seeds, on the same test images, with paired intervals",
        description="Each run is a git revision, an experiment as `dvc exp show` names it, a folder holding eval/ "
        "(the workspace: .), or a glob of experiment names. For the test split and every external set that all "
        "were scored on: balanced accuracy and macro AUC of each side (mean and sd over its runs), B - A with a "
        "paired bootstrap 95% interval (the same lesions for both sides, and the runs of a group drawn too), "
        "McNemar's exact test for one run a side, and recall per class. Refuses runs scored on different images.",
    )
    parser.add_argument("runs", nargs="*", help="runs A B [C ...]: each compared with A")
    parser.add_argument("--a", nargs="+", help="a group of runs (seeds of one setting) as side A")
    parser.add_argument("--b", nargs="+", help="and side B")
    parser.add_argument("--repo", type=Path, default=Path("."), help="the repository the runs are in")
    parser.add_argument("--resamples", type=_positive, default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="the bootstrap's draws")
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="print JSON")
    shown.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.set_defaults(run=_compare)


def _check_params(args: argparse.Namespace) -> int:
    from skinlesion.profiles import check_profile, is_profile
    from skinlesion.schema import check_params_file

    for path in args.files:
        if is_profile(path):  # only the keys it changes: checked as run-profile would run it
            check_profile(path, args.onto)
            print(f"{path}: ok (applied onto {args.onto})")
        else:
            check_params_file(path)
            print(f"{path}: ok")
    return 0


def _add_check_params(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "check-params",
        help="check every section of params files at once",
        description="A file in profiles/ holds only the keys it changes: it is checked applied onto --onto, "
        "as run-profile runs it.",
    )
    parser.add_argument("files", type=Path, nargs="*", default=[Path("params.yaml")], help="params files or profiles")
    parser.add_argument("--onto", type=Path, default=Path("params.yaml"), help="the params file a profile changes")
    parser.set_defaults(run=_check_params)


def _run_profile(args: argparse.Namespace) -> int:
    from skinlesion.profiles import run_profile

    return run_profile(args.profile, args.dvc_args)


def _add_run_profile(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "run-profile",
        help="run a profile (profiles/NAME.yaml) as a DVC experiment beside the workspace's run",
        description="Runs `dvc exp run --temp --name NAME -S key=value ...` for the keys of the profile; "
        "further arguments go to dvc exp run (e.g. --queue, --force).",
    )
    parser.add_argument("profile", help="a name in profiles/ (isic2019) or a profile file")
    parser.set_defaults(run=_run_profile)


def _params_schema(args: argparse.Namespace) -> int:
    from skinlesion.schema import write_params_schema

    write_params_schema(args.out)
    return 0


def _add_params_schema(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("params-schema", help="write the JSON schema of params.yaml for editors")
    parser.add_argument("--out", type=Path, default=Path("params.schema.json"))
    parser.set_defaults(run=_params_schema)


class _WithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """--help with each option's default, where it has one to show (not None, not a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if default is None or default is False or default is argparse.SUPPRESS or "%(default)" in (action.help or ""):
            return action.help
        if not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)):
            return action.help
        shown = " ".join(map(str, default)) if isinstance(default, list) else str(default)
        return f"{action.help or ''} (default: {shown.replace('%', '%%')})".lstrip()


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="skinlesion", description=__doc__.splitlines()[0])
    # every subcommand's --help shows its defaults, a subcommand added later too
    subparser = functools.partial(argparse.ArgumentParser, formatter_class=_WithDefaults)
    commands = root.add_subparsers(dest="command", required=True, parser_class=subparser)
    # each adds its subcommand, in the order `skinlesion --help` lists them
    for add in (
        _add_predict,
        _add_serve,
        _add_import_isic,
        _add_export,
        _add_compare,
        _add_check_params,
        _add_run_profile,
        _add_params_schema,
    ):
        add(commands)
    return root


def _run(argv: list[str] | None) -> int:
    from skinlesion.entry import LOG_FORMAT, report_errors

    args, extra = parser().parse_known_args(argv)
    if extra and args.command != "run-profile":
        parser().error(f"unrecognized arguments: {' '.join(extra)}")
    args.dvc_args = extra
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    return report_errors(f"skinlesion {args.command}", lambda: args.run(args))


# the status a shell reports for a tool that a closed pipe ended: 128 + SIGPIPE (13)
CLOSED_PIPE = 141


def main(argv: list[str] | None = None) -> None:
    """The `skinlesion` command. Output into a pipe that closes early (`| head -2`) ends it
    quietly, as it ends a Unix tool, not with a BrokenPipeError traceback."""
    try:
        try:
            status = _run(argv)
        except SystemExit as exit_:  # argparse's --help and usage errors write, then exit
            status = exit_.code
        sys.stdout.flush()  # here, where a closed pipe can be caught, not at exit
    except BrokenPipeError:
        # Python flushes stdout again as it exits: let that write go nowhere rather than fail too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = CLOSED_PIPE
    sys.exit(status)


if __name__ == "__main__":
    main()
