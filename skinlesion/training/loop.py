"""The training loop: Adam and cross-entropy as published, the best epoch kept on validation.

The test split is never read here. With a distributed `World` (several processes under
torchrun) every process trains on its share of each epoch, figures are gathered from all of
them, and only rank 0 writes. How each part works: loaders.py (the data), trainer.py (what a
run steps through), epoch.py (one epoch), finish.py (the model file), faults.py (errors that
say what to change), resume.py (the state saved after each epoch)."""

from __future__ import annotations

import logging
from pathlib import Path

from skinlesion.data.folds import FoldData
from skinlesion.seeding import seed_everything
from skinlesion.training.distributed import World
from skinlesion.training.epoch import run_epoch
from skinlesion.training.faults import explain_faults
from skinlesion.training.finish import finish_model, save_model
from skinlesion.training.params import TrainRun
from skinlesion.training.resume import fingerprint
from skinlesion.training.trainer import build_trainer, restore

log = logging.getLogger(__name__)


def fit(
    params: TrainRun,
    data: FoldData,
    model_path: Path,
    live,
    state_path: Path | None = None,
    state: dict | None = None,
    world: World = World(),
) -> dict:
    """Train for `training.epochs`, keep the best epoch on val; returns the best epoch's record.

    `live` is a dvclive.Live (or a MemoryLive). With `state_path`, the training state is saved
    there after every epoch; `state`, one read back by load_state(), resumes that run after
    its last completed epoch.
    """
    settings = params.training
    seed_everything(settings.seed)
    trainer = build_trainer(params, data, world)
    best, start = {"epoch": -1, "val_balanced_accuracy": -1.0}, 0
    if state:
        best, start = restore(trainer, state)
        live.step = start
        log.info("resuming from epoch %d (best so far: epoch %d)", start, best["epoch"])
    run = fingerprint(params, data)
    for epoch in range(start, settings.epochs):
        with explain_faults(params, epoch, resumable=state_path is not None and epoch > 0):
            scores = dict(zip(("train", "val"), run_epoch(trainer, epoch, settings, world)))
        for split, values in scores.items():
            for name, value in values.items():
                live.log_metric(f"{split}/{name}", value)
        log.info("epoch %d: %s", epoch, "; ".join(f"{split} {_fmt(values)}" for split, values in scores.items()))
        if scores["val"]["balanced_accuracy"] > best["val_balanced_accuracy"]:
            best = {
                "epoch": epoch,
                **{f"val_{name}": scores["val"][name] for name in ("balanced_accuracy", "accuracy", "loss")},
            }
            if world.main:
                save_model(model_path, trainer.net, params, best, data.classes)
        stop = bool(settings.early_stopping_patience) and epoch - best["epoch"] >= settings.early_stopping_patience
        if state_path and world.main:
            done = stop or epoch == settings.epochs - 1
            trainer.save_state(state_path, fingerprint=run, epoch=epoch, best=best, complete=done)
        live.summary["best"] = best
        live.next_step()
        if stop:
            log.info("early stop after epoch %d: no better val balanced accuracy since epoch %d", epoch, best["epoch"])
            break
    if world.main:
        best = {**best, **finish_model(model_path, data, trainer.device, settings)}
        live.summary["best"] = best
    return best


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.4f}" for name, value in values.items())
