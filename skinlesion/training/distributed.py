"""Training on several processes with torch.distributed (DistributedDataParallel).

`training.processes: N` makes the train stage start itself under torchrun with N processes
on this machine; `torchrun --nproc_per_node=N -m stages.train ...` (or a cluster launcher
setting RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT) runs it directly. Every
process trains on its share of each epoch; metrics are gathered from all of them; only
rank 0 writes files. Mismatches fail with a message instead of waiting forever.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import subprocess
import sys
from typing import Any

import torch
import torch.distributed as dist

from skinlesion.errors import TrainingError
from skinlesion.training.params import TrainingParams


class DistributedError(TrainingError):
    """The processes of a training run do not fit together or cannot reach each other."""


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes the outputs and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def seed(self, seed: int, epoch: int) -> int:
        """A seed for `epoch` on this rank: distinct across ranks and epochs, `seed + epoch` alone."""
        return (seed + epoch) * self.size + self.rank


def launched_world() -> World:
    """The world torchrun (or another launcher) describes in the environment; one process if none."""
    if "WORLD_SIZE" not in os.environ:
        return World()
    values = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        try:
            values[name] = int(os.environ.get(name, "0"))
        except ValueError:
            raise DistributedError(f"environment variable {name}={os.environ[name]!r} is not an integer") from None
    return World(rank=values["RANK"], size=values["WORLD_SIZE"], local_rank=values["LOCAL_RANK"])


def check_world(world: World, settings: TrainingParams) -> None:
    """Fail if the launched processes are not the ones params.yaml asks for."""
    if world.size != settings.processes:
        raise DistributedError(
            f"{world.size} training processes were started (WORLD_SIZE) but params training.processes "
            f"is {settings.processes}: set training.processes: {world.size}, or start "
            f"{settings.processes} (torchrun --nproc_per_node={settings.processes}); the number is "
            "recorded with the run because it changes the shuffled order and BatchNorm's batches"
        )
    if not 0 <= world.rank < world.size:
        raise DistributedError(f"RANK {world.rank} is outside 0..{world.size - 1} (WORLD_SIZE {world.size})")


def backend_for(settings: TrainingParams, device: torch.device) -> str:
    """The torch.distributed backend to use on `device`; fail if it is not available."""
    backend = settings.backend
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed: set training.processes: 1")
    if backend == "nccl" and (device.type != "cuda" or not dist.is_nccl_available()):
        raise DistributedError(
            f"training.backend nccl needs CUDA GPUs and a torch built with NCCL; training runs on {device}: "
            "use backend gloo or auto"
        )
    if backend == "gloo" and not dist.is_gloo_available():
        raise DistributedError("training.backend gloo is not available in this torch build: use nccl on CUDA")
    return backend


def cuda_device(world: World) -> torch.device:
    """This process's GPU: one per local rank."""
    count = torch.cuda.device_count()
    if world.local_rank >= count:
        raise DistributedError(
            f"process with LOCAL_RANK {world.local_rank} has no GPU: {count} visible; "
            f"start at most {count} processes per machine"
        )
    torch.cuda.set_device(world.local_rank)
    return torch.device("cuda", world.local_rank)


def connect(world: World, backend: str, timeout_s: int) -> None:
    """Join the process group; fail after `timeout_s` if the other processes do not come."""
    try:
        dist.init_process_group(
            backend, rank=world.rank, world_size=world.size, timeout=datetime.timedelta(seconds=timeout_s)
        )
    except dist.DistError as error:
        address = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        raise DistributedError(
            f"rank {world.rank} of {world.size} could not meet the other training processes at {address} "
            f"within training.timeout_s={timeout_s} s ({error}); start all {world.size} of them, e.g. with "
            f"torchrun --nproc_per_node={world.size}"
        ) from error


def disconnect() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def gather(value: Any, world: World) -> list[Any]:
    """`value` from every process, in rank order (just [value] for one process)."""
    if not world.distributed:
        return [value]
    values: list[Any] = [None] * world.size
    dist.all_gather_object(values, value)
    return values


def share_buffers(module: torch.nn.Module, world: World) -> None:
    """Give every process rank 0's buffers (BatchNorm's running statistics).

    DDP hands them out at the start of each forward pass, so after an epoch's last step every
    process holds its own; validation and the saved model must all use rank 0's.
    """
    if world.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def torchrun_command(processes: int, argv: list[str]) -> list[str]:
    """The command that reruns `python -m stages.train ARGV` as `processes` processes here."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "stages.train",
        *argv,
    ]


def launch(settings: TrainingParams, argv: list[str], device: torch.device) -> int:
    """Run the train stage as `training.processes` processes on this machine; their exit code.

    What can be checked before starting them is checked here, so a mistake fails at once.
    """
    backend_for(settings, device)
    if device.type == "cuda" and torch.cuda.device_count() < settings.processes:
        raise DistributedError(
            f"training.processes is {settings.processes} but {torch.cuda.device_count()} GPUs are visible: "
            "lower it to at most that"
        )
    return subprocess.run(torchrun_command(settings.processes, argv)).returncode
