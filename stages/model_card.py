"""Stage model-card: the model card beside the model (skinlesion.card).

Writes --markdown and --html: what the model is and is not for, its data, the training params
that differ from the recipe (--recipe), the test figures, curves and Grad-CAM panels, the
figures on each external test set of evaluate.external (--external: evaluate-external's reports),
the limitations the numbers show, and how to reproduce it. The HTML opens from a file, offline.
--lock (dvc.lock) gives the data version as DVC hashed it; it is read, not a dependency.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from skinlesion.atomic import atomic_file
from skinlesion.card.inputs import (
    CardInputs,
    ModelCardRun,
    data_version,
    read_curves,
    read_external,
    read_gradcam,
    read_json_keys,
    read_predictions,
    recipe_params,
)
from skinlesion.card.render import card_html, card_markdown
from skinlesion.card.sections import build_card
from skinlesion.config import load_params
from skinlesion.entry import run_stage
from skinlesion.evaluation.report_schema import EvalReport
from skinlesion.files import read_yaml
from skinlesion.model.info import ModelInfo
from skinlesion.model.model_file import read_checkpoint

log = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True, help="evaluate's metrics/eval.json")
    parser.add_argument("--data-metrics", type=Path, required=True, help="prepare-split's metrics/data.json")
    parser.add_argument("--predictions", type=Path, required=True, help="evaluate's per-image predictions")
    parser.add_argument("--curves", type=Path, required=True, help="evaluate's curves folder")
    parser.add_argument("--gradcam", type=Path, required=True, help="the gradcam stage's folder of overlays")
    parser.add_argument(
        "--external", type=Path, required=True, help="evaluate-external's folder of reports, one per external set"
    )
    parser.add_argument("--recipe", type=Path, required=True, help="the profile of the full-scale recipe")
    parser.add_argument("--sample", type=Path, required=True, help="where make-sample writes the synthetic sample")
    parser.add_argument("--lock", type=Path, required=True, help="dvc.lock (its absence is no error)")
    parser.add_argument("--markdown", type=Path, required=True)
    parser.add_argument("--html", type=Path, required=True)
    args = parser.parse_args()
    params = load_params(ModelCardRun)

    model = ModelInfo.from_stored(read_checkpoint(args.model), args.model)  # its description; no network is built
    lock = read_yaml(args.lock) if args.lock.is_file() else None
    inputs = CardInputs(
        model_file=str(args.model),
        model=model,
        evaluation=EvalReport.read(args.metrics),
        data_counts=read_json_keys(args.data_metrics, ("train", "val", "test")),
        params=params,
        recipe=recipe_params(params, read_yaml(args.recipe), str(args.recipe)),
        recipe_file=str(args.recipe),
        synthetic=Path(params.data.root) == args.sample,
        data_version=data_version(lock, params.data.root),
        predictions=read_predictions(args.predictions, list(model.classes)),
        curves=read_curves(args.curves, list(model.classes)),
        gradcam=read_gradcam(args.gradcam),
        external=read_external(args.external, list(params.evaluate.external)),
    )
    card = build_card(inputs)
    with atomic_file(args.markdown) as tmp:
        tmp.write_text(card_markdown(card), encoding="utf-8")
    with atomic_file(args.html) as tmp:
        tmp.write_text(card_html(card), encoding="utf-8")
    log.info("wrote the model card to %s and %s", args.markdown, args.html)


if __name__ == "__main__":
    run_stage(main)
