"""Stage evaluate: the model scored on the test split (skinlesion.evaluation.report); and, as
stage evaluate-external (one per entry of evaluate.external), on an external test set.

Writes the metrics to --metrics; one row per image with its lesion, true class, predicted
class and class probabilities to --predictions, which DVC draws as the confusion matrix and
skinlesion compare reads; and one-vs-rest ROC and precision-recall curves and the reliability
diagram's data to --curves. Of the stages, only evaluate and gradcam (which explains
evaluate's predictions) score the test split (prepare-external reads it only to leave its
images out of an external set). For an external set (--external, the folder
prepare-external wrote) the metrics are eval.json's `test` report, after the set's own counts:
the images in its folder, those left out because the pipeline's data holds them
(`overlap_excluded`, per guard) and those that could not be read.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from skinlesion.classes import read_classes
from skinlesion.config import load_params
from skinlesion.data.arrays import EXTERNAL_SPLIT, read_manifest
from skinlesion.entry import run_stage
from skinlesion.errors import DataError
from skinlesion.evaluation.report import EvaluateRun, score_images, write_predictions
from skinlesion.evaluation.report_schema import ExternalCounts, ExternalReport
from skinlesion.model.checkpoint import load_for_inference
from skinlesion.model.device import select_device

log = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    images = parser.add_mutually_exclusive_group(required=True)
    images.add_argument("--prepared", type=Path, help="prepare-split output folder (test is read)")
    images.add_argument("--external", type=Path, help="prepare-external's folder of an external test set")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON file for the metrics")
    parser.add_argument("--predictions", type=Path, required=True, help="CSV of per-image predictions")
    parser.add_argument("--curves", type=Path, required=True, help="folder for ROC, precision-recall, reliability")
    args = parser.parse_args()
    params = load_params(EvaluateRun)

    device = select_device(params.training.device)
    # the test split's model must predict the data's classes; an external set's labels are checked
    # against the model's own (and were against the data's by prepare-external)
    model, info = load_for_inference(args.model, device, read_classes(args.prepared) if args.prepared else None)
    folder = args.prepared or args.external
    where = folder / ("test.csv" if args.prepared else f"{EXTERNAL_SPLIT}.csv")
    manifest = read_manifest(where)
    if args.external:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        if manifest.empty:
            raise DataError(f"{summary['root']}: no image left to score (left out: {summary['overlap_excluded']})")
    metrics, scores = score_images(model, info, device, folder, manifest, str(where), params.evaluate)
    if args.external:
        counts = ExternalCounts(
            images_in_folder=summary["images_in_folder"],
            overlap_excluded=summary["overlap_excluded"],
            skipped=summary["skipped"],
        )
        ExternalReport.of(counts, metrics.test).write(args.metrics)
    else:
        metrics.write(args.metrics)
    write_predictions(manifest, scores, info, params.evaluate, args.predictions, args.curves)
    log.info(
        "%s: balanced accuracy %.4f, accuracy %.4f on %d images",
        where,
        metrics.test.balanced_accuracy,
        metrics.test.accuracy,
        len(scores.y_true),
    )


if __name__ == "__main__":
    run_stage(main)
