"""Stage train: DenseNet121 (or another torchvision backbone) on the balanced training set.

The loop is skinlesion.training.loop. With `training.processes` > 1 this module starts itself
under torchrun and trains with DistributedDataParallel (skinlesion.training.distributed).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from skinlesion.config import load_params
from skinlesion.data.folds import FoldData
from skinlesion.entry import LOG_FORMAT, run_stage
from skinlesion.model.device import select_device
from skinlesion.training.distributed import backend_for, check_world, connect, disconnect, launch, launched_world
from skinlesion.training.live import MemoryLive
from skinlesion.training.loop import fit
from skinlesion.training.params import TrainRun
from skinlesion.training.resume import RunFolder, fingerprint, load_state

log = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--balanced", type=Path, required=True, help="augment-oversample's balanced manifest (CSV)")
    parser.add_argument("--prepared", type=Path, required=True, help="prepare-split output folder (its arrays)")
    parser.add_argument("--folds", type=Path, required=True, help="assign-folds' fold table (CSV)")
    parser.add_argument("--fold", type=int, required=True, help="the fold this run validates on")
    parser.add_argument("--model", type=Path, required=True, help="where to write the best checkpoint")
    parser.add_argument("--live", type=Path, required=True, help="DVCLive folder for per-epoch metrics")
    parser.add_argument(
        "--resume",
        type=Path,
        required=True,
        help="folder of the unfinished run (state, best model and curves so far), removed when it finishes",
    )
    args = parser.parse_args()
    world = launched_world()
    if world.distributed:  # each process's lines say which rank wrote them
        logging.basicConfig(level=logging.INFO, format=f"rank {world.rank}: {LOG_FORMAT}", force=True)
    params = load_params(TrainRun)
    settings = params.training
    if settings.processes > 1 and "WORLD_SIZE" not in os.environ:
        sys.exit(launch(settings, sys.argv[1:], select_device(settings.device)))  # torchrun reruns this module
    check_world(world, settings)
    if world.distributed:
        connect(world, backend_for(settings, select_device(settings.device)), settings.timeout_s)
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from dvclive import Live  # imported here: only rank 0 logs through DVC

    data = FoldData.of_fold(args.prepared, args.balanced, args.folds, args.fold)
    run = RunFolder(args.resume)
    state = load_state(run.state, fingerprint(params, data))
    if state is None and world.main:
        run.clear()  # what a run of other settings or data left
    # DVCLive keeps the killed run's curves only if the run will really be resumed
    live = (
        Live(str(run.live), dvcyaml=False, save_dvc_exp=False, report=None, resume=state is not None)
        if world.main
        else MemoryLive()
    )
    try:
        with live as logger:
            best = fit(params, data, run.model, logger, run.state, state, world)
    finally:
        disconnect()
    if world.main:
        run.publish(args.model, args.live)
    log.info("best epoch %d: val balanced accuracy %.4f", best["epoch"], best["val_balanced_accuracy"])


if __name__ == "__main__":
    run_stage(main)
