"""Stage ensemble: the model that evaluate, gradcam and predict use, from the fold models.

With one fold it is fold 0's model file, byte for byte. With K folds it is their ensemble
(skinlesion.model.ensemble: probabilities averaged over the fold models) with its unknown
threshold and out-of-fold estimate (skinlesion.evaluation.cv). Every fold's validation
curves are gathered into one table, drawn one line per fold.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from skinlesion.atomic import atomic_file
from skinlesion.config import load_params
from skinlesion.data.arrays import read_manifest
from skinlesion.data.folds import fold_numbers
from skinlesion.entry import run_stage
from skinlesion.evaluation.fold_outputs import EnsembleRun, fold_curves, fold_model_files

log = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fold-models", type=Path, required=True, help="folder of the fold models (K/model.pt)")
    parser.add_argument("--prepared", type=Path, required=True, help="prepare-split output folder (its arrays)")
    parser.add_argument("--folds", type=Path, required=True, help="assign-folds' fold table (CSV)")
    parser.add_argument("--live", type=Path, required=True, help="folder of the folds' DVCLive folders (K/)")
    parser.add_argument("--out", type=Path, required=True, help="the model file to write")
    parser.add_argument("--curves", type=Path, required=True, help="CSV of every fold's validation curves")
    args = parser.parse_args()
    params = load_params(EnsembleRun).training

    table = read_manifest(args.folds)
    folds = fold_numbers(table)
    files = fold_model_files(args.fold_models, folds)
    with atomic_file(args.curves) as tmp:
        fold_curves(args.live, folds).round(6).to_csv(tmp, index=False)
    if len(files) == 1:
        with atomic_file(args.out) as tmp:
            shutil.copyfile(files[0], tmp)
        log.info("one fold: %s is %s", args.out, files[0])
        return
    # torch, the fold models and their predictions: only an ensemble of several folds needs them
    from skinlesion.evaluation.cv import combine_folds
    from skinlesion.model.device import select_device
    from skinlesion.model.model_file import save_ensemble
    from skinlesion.model.unknown import KEEP_KNOWN

    device = select_device(params.device)
    members, info = combine_folds(files, table, args.prepared, str(args.folds), device, params.batch_size)
    save_ensemble(args.out, members, info)
    log.info(
        "ensemble of %d fold models; out of fold (%d train+val images): balanced accuracy %.4f; unknown threshold "
        "keeps %.0f%% known",
        len(files),
        info.out_of_fold["images"],
        info.out_of_fold["balanced_accuracy"],
        100 * KEEP_KNOWN,
    )


if __name__ == "__main__":
    run_stage(main)
