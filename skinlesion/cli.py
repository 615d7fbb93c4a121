"""The `skinlesion` command: the tools around the pipeline (the stages run through dvc repro).

skinlesion predict IMAGE ... [--model models/model.pt] [--device auto] [--cam DIR]
skinlesion import-isic [--test] [--out data/isic2019]
skinlesion check-params [params.yaml ...]
skinlesion run-profile NAME [dvc exp run arguments ...]
skinlesion params-schema [--out params.schema.json]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _predict(args: argparse.Namespace) -> int:
    from skinlesion.predict import run

    return run(args)


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


def _check_params(args: argparse.Namespace) -> int:
    from skinlesion.schema import check_params_file

    for path in args.files:
        check_params_file(path)
        print(f"{path}: ok")
    return 0


def _run_profile(args: argparse.Namespace) -> int:
    from skinlesion.profiles import run_profile

    return run_profile(args.profile, args.dvc_args)


def _params_schema(args: argparse.Namespace) -> int:
    from skinlesion.schema import write_params_schema

    write_params_schema(args.out)
    return 0


def parser() -> argparse.ArgumentParser:
    from skinlesion.data.official import OFFICIAL_URL
    from skinlesion.predict import add_arguments

    root = argparse.ArgumentParser(prog="skinlesion", description=__doc__.splitlines()[0])
    commands = root.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="classify new images with a trained model")
    add_arguments(predict)
    predict.set_defaults(run=_predict)
    official = commands.add_parser("import-isic", help="dvc import-url of the official ISIC 2019 files")
    official.add_argument(
        "--out", type=Path, help="folder to import into: data/isic2019 (data.root), with --test data/isic2019-test"
    )
    official.add_argument(
        "--test", action="store_true", help="the official test images and metadata (and ground truth, if served)"
    )
    official.add_argument("--base-url", default=OFFICIAL_URL, help="where the three files are served")
    official.add_argument("--no-verify", action="store_true", help="skip the md5 check of the CSVs")
    official.set_defaults(run=_import_isic)
    check = commands.add_parser("check-params", help="check every section of params files at once")
    check.add_argument("files", type=Path, nargs="*", default=[Path("params.yaml")])
    check.set_defaults(run=_check_params)
    profile = commands.add_parser(
        "run-profile",
        help="run a profile (profiles/NAME.yaml) as a DVC experiment beside the workspace's run",
        description="Runs `dvc exp run --temp --name NAME -S key=value ...` for the keys of the profile; "
        "further arguments go to dvc exp run (e.g. --queue, --force).",
    )
    profile.add_argument("profile", help="a name in profiles/ (isic2019) or a profile file")
    profile.set_defaults(run=_run_profile)
    schema = commands.add_parser("params-schema", help="write the JSON schema of params.yaml for editors")
    schema.add_argument("--out", type=Path, default=Path("params.schema.json"))
    schema.set_defaults(run=_params_schema)
    return root


def main(argv: list[str] | None = None) -> None:
    from skinlesion.entry import LOG_FORMAT, report_errors

    args, extra = parser().parse_known_args(argv)
    if extra and args.command != "run-profile":
        parser().error(f"unrecognized arguments: {' '.join(extra)}")
    args.dvc_args = extra
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    sys.exit(report_errors(f"skinlesion {args.command}", lambda: args.run(args)))


if __name__ == "__main__":
    main()
