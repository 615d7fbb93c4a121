"""Faults during training (running out of memory, a loader worker dying) turned into
TrainingErrors that say which params to change, and whether the run can resume."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from skinlesion.errors import TrainingError
from skinlesion.training.params import TrainRun


@contextlib.contextmanager
def explain_faults(params: TrainRun, epoch: int, resumable: bool) -> Iterator[None]:
    """Turn running out of memory and a dying loader worker into errors that say what to change."""
    resume = (
        f" The state after epoch {epoch - 1} is saved: dvc repro with the same params resumes from epoch {epoch}; "
        "changed params start over."
        if resumable
        else ""
    )
    settings = params.training
    try:
        yield
    except torch.OutOfMemoryError as error:
        raise TrainingError(
            f"out of memory in epoch {epoch} with training.batch_size {settings.batch_size} "
            f"({settings.batch_size // settings.processes} per process), prepare.image_size "
            f"{params.prepare.image_size}, model.name {params.model.name}, training.precision "
            f"{settings.precision}: lower training.batch_size or prepare.image_size, or use training.precision "
            f"bf16 on a GPU that has it.{resume}"
        ) from error
    except RuntimeError as error:
        if "DataLoader worker" not in str(error):
            raise
        raise TrainingError(
            f"a data loader worker died in epoch {epoch} ({error}). It is most often the machine running out of "
            f"memory (see dmesg for the OOM killer) or, in a container, a small /dev/shm (docker --shm-size): "
            f"lower training.num_workers ({settings.num_workers}) or training.batch_size "
            f"({settings.batch_size}).{resume}"
        ) from error
