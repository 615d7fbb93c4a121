"""Stage prepare-external (one per entry of evaluate.external): an external test set decoded as
prepare-split decodes, less the images the pipeline's own data holds (skinlesion.data.external).

Writes, under --out, `external.npy` and `external.csv` (the images kept, in prepare-split's
array and manifest format), `excluded.csv` (each image left out and why: isic_id, lesion_id,
pixels, or why it could not be read) and `summary.json` (the counts). A new model does not
rerun it: only evaluate-external, which scores what it wrote.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from skinlesion.atomic import atomic_dir
from skinlesion.config import load_params
from skinlesion.data.external import prepare_external
from skinlesion.data.prepare import PrepareRun
from skinlesion.entry import run_stage

log = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the external set's folder, in data.root's layout")
    parser.add_argument("--prepared", type=Path, required=True, help="prepare-split's folder: the images to leave out")
    parser.add_argument("--out", type=Path, required=True, help="folder for the decoded external set")
    args = parser.parse_args()
    params = load_params(PrepareRun).prepare

    with atomic_dir(args.out) as tmp:
        summary = prepare_external(args.root, args.prepared, params, tmp)
    log.info(
        "%s: %d of %d images kept; left out as already in the pipeline's data: %s; unreadable: %d",
        args.root,
        summary["images"],
        summary["images_in_folder"],
        summary["overlap_excluded"],
        summary["skipped"],
    )


if __name__ == "__main__":
    run_stage(main)
