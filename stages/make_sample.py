"""Stage make-sample: a synthetic, dermoscopy-like dataset in the ISIC 2019 file format
(skinlesion.data.synthetic says how it is made)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from skinlesion.atomic import atomic_dir
from skinlesion.config import load_params
from skinlesion.data.synthetic import SampleRun, images_per_class, plan_sample, write_sample
from skinlesion.entry import run_stage

log = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the sample into")
    args = parser.parse_args()
    params = load_params(SampleRun).sample
    rows = plan_sample(params)
    with atomic_dir(args.out) as tmp:
        write_sample(rows, params.scale, tmp)
    counts = images_per_class(params.num_images, params.min_per_class)
    log.info("wrote %d images of %s to %s", len(rows), counts, args.out)


if __name__ == "__main__":
    run_stage(main)
