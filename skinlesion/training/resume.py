"""Resumable training: the state saved after every epoch, and when it may be resumed.

A run killed mid-way continues on the next `dvc repro` from its last completed epoch, with
the model, optimiser and schedule as they were. It resumes only a run of the very same
settings and data (a fingerprint of both is stored), and never a run that finished.

An unfinished run lives in its own folder (RunFolder), not in the train stage's outputs: DVC
empties a stage's outputs before running it, unless they are `persist`, and a stage with a
persistent output never enters DVC's run cache, which is how fold models trained on other
machines are restored (docs/cross-validation.md). The outputs are written once, when the run
has finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import torch
from torch import nn

from skinlesion.atomic import atomic_dir, atomic_file
from skinlesion.data.folds import FoldData
from skinlesion.training.params import TrainRun

log = logging.getLogger(__name__)


class RunFolder:
    """The folder of an unfinished training run: its state, its best model and its DVCLive
    curves so far."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.state, self.model, self.live = self.folder / "state.pt", self.folder / "model.pt", self.folder / "live"

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def publish(self, model: Path, live: Path) -> None:
        """Copy the finished run's model and curves to the stage's outputs (each appears whole
        or not at all), then remove the folder."""
        with atomic_dir(live) as tmp:
            shutil.copytree(self.live, tmp, dirs_exist_ok=True)
        with atomic_file(model) as tmp:
            shutil.copyfile(self.model, tmp)
        self.clear()


def fingerprint(params: TrainRun, data: FoldData) -> str:
    """Hash of what determines a training run: its params and its training and validation manifests."""
    digest = hashlib.sha256()
    digest.update(json.dumps(params.model_dump(mode="json"), sort_keys=True).encode())
    digest.update(data.balanced.read_bytes())
    digest.update(data.validation.to_csv(index=False).encode())
    return digest.hexdigest()


def save_state(
    path: Path,
    *,
    fingerprint: str,
    epoch: int,
    best: dict,
    complete: bool,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
) -> None:
    """Write the state after `epoch` (0-based, completed), atomically."""
    state = {
        "fingerprint": fingerprint,
        "epoch": epoch,
        "best": best,
        "complete": complete,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
    }
    with atomic_file(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path, fingerprint: str) -> dict | None:
    """The saved state if it belongs to an unfinished run with this fingerprint, else None."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unreadable or foreign: start over rather than trust it
        log.warning("%s: not a usable training state (%s); starting from epoch 0", path, error)
        return None
    if state.get("fingerprint") != fingerprint:
        log.info("%s: saved for other settings or data; starting from epoch 0", path)
        return None
    if state.get("complete"):
        return None
    return state
