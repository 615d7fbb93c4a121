"""Training as several processes (DistributedDataParallel on gloo, CPU) and its failure modes."""

import csv
import json
import time

import pytest
import torch
import torch.distributed as dist
from conftest import (
    ALL_STAGES,
    REPO,
    THREE,
    check_eval_json,
    check_own_classes,
    copy_repo,
    own_data_params,
    run_dvc,
    run_stage,
    stages_run,
    write_params,
)
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from skinlesion.config import load_params
from skinlesion.model.checkpoint import load_checkpoint
from skinlesion.training.distributed import DistributedError, World, check_world, launched_world, share_buffers
from skinlesion.training.epoch import validate
from skinlesion.training.params import TrainRun

TRAIN_ARGS = (
    "--balanced",
    "balanced.csv",
    "--prepared",
    "prepared",
    "--folds",
    "folds.csv",
    "--fold",
    "0",
    "--model",
    "model.pt",
    "--live",
    "live",
    "--resume",
    "resume",
)


@pytest.mark.slow
def test_dvc_repro_of_a_three_class_root_trains_with_two_gloo_processes(three_class_root, tmp_path):
    """Two training processes through dvc repro, on a data root of three classes without a
    metadata CSV (tests/test_own_data.py): every stage, evaluate accepts the model, and predict
    follows the data's classes."""
    params = own_data_params(three_class_root)
    repo = copy_repo(tmp_path / "repo", {**params, "training": {"epochs": 2, "num_workers": 0, "processes": 2}})
    output = run_dvc("repro", cwd=repo)
    assert stages_run(output) == ALL_STAGES
    assert "(process 0 of 2)" in output and "(process 1 of 2)" in output
    model, info = load_checkpoint(repo / "models" / "model.pt")
    curves = repo / "dvclive" / "folds" / "0" / "plots" / "metrics"
    with open(curves / "train" / "loss.tsv") as file:
        assert [int(row["step"]) for row in csv.DictReader(file, delimiter="\t")] == [0, 1]  # rank 0 alone logs
    with open(curves / "val" / "balanced_accuracy.tsv") as file:
        validation = [float(row["balanced_accuracy"]) for row in csv.DictReader(file, delimiter="\t")]
    # the kept epoch is the first best on validation, gathered from both processes
    assert info.arch == "efficientnet_b0" and info.epoch == validation.index(max(validation))
    assert info.val_balanced_accuracy == pytest.approx(max(validation))
    check_eval_json(repo)  # evaluate's figures, recomputed from its predictions
    assert "Data and pipelines are up to date" in run_dvc("status", cwd=repo)
    check_own_classes(repo, three_class_root, THREE)


def test_a_world_size_other_than_training_processes_fails_at_once(tmp_path):
    write_params(tmp_path, {"training": {"processes": 1}})
    started = time.monotonic()
    result = run_stage(
        "train", *TRAIN_ARGS, cwd=tmp_path, env={"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}, timeout=120
    )
    assert result.returncode != 0
    assert "2 training processes were started (WORLD_SIZE) but params training.processes is 1" in result.stderr
    assert time.monotonic() - started < 60


def test_a_process_that_never_comes_fails_after_timeout_s_not_a_hang(tmp_path):
    write_params(tmp_path, {"training": {"processes": 2, "timeout_s": 3}})
    env = {
        "WORLD_SIZE": "2",
        "RANK": "0",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "0",  # rank 0 serves the rendezvous on any free port: no port to race for
    }
    result = run_stage("train", *TRAIN_ARGS, cwd=tmp_path, env=env, timeout=120)
    assert result.returncode != 0
    assert "rank 0 of 2 could not meet the other training processes" in result.stderr
    assert "within training.timeout_s=3 s" in result.stderr


def test_nccl_without_gpus_fails_before_starting_processes(tmp_path):
    write_params(tmp_path, {"training": {"processes": 2, "backend": "nccl", "device": "cpu"}})
    result = run_stage("train", *TRAIN_ARGS, cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    assert "training.backend nccl needs CUDA GPUs" in result.stderr
    assert "torch.distributed.run" not in result.stderr  # failed before torchrun started anything


def test_batch_size_must_split_over_the_processes(tmp_path):
    from skinlesion.config import ParamsError

    with pytest.raises(ParamsError, match="training.batch_size: 32 does not split evenly over 3 processes"):
        load_params(TrainRun, write_params(tmp_path, {"training": {"processes": 3}}))


def test_world_from_the_environment_and_its_seeds(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert launched_world() == World()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    world = launched_world()
    assert world == World(rank=3, size=4, local_rank=1) and not world.main and world.distributed
    assert World().seed(42, 5) == 47  # one process: the seeds of a plain run
    seeds = {World(rank=r, size=4).seed(42, e) for r in range(4) for e in range(50)}
    assert len(seeds) == 200
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(DistributedError, match="RANK='x' is not an integer"):
        launched_world()


def test_rank_outside_the_world_is_refused():
    settings = load_params(TrainRun, REPO / "params.yaml").training
    with pytest.raises(DistributedError, match="RANK 1 is outside 0..0"):
        check_world(World(rank=1, size=1), settings)


def _scored_set() -> tuple[nn.Module, TensorDataset]:
    torch.manual_seed(0)
    images, labels = torch.randn(37, 3, 4, 4), torch.arange(37) % 8
    return nn.Sequential(nn.Flatten(), nn.Linear(48, 8)), TensorDataset(images, labels)


def _meet(rank: int, out: str) -> None:
    """Join the two-process gloo group through a file beside `out`: no port to race for with
    the other test workers."""
    dist.init_process_group("gloo", init_method=f"file://{out}.rendezvous", rank=rank, world_size=2)


def _validate_share(rank: int, out: str) -> None:
    _meet(rank, out)
    model, data = _scored_set()
    share = DataLoader(Subset(data, range(rank, len(data), 2)), batch_size=4)
    result = validate(model, share, torch.device("cpu"), World(rank=rank, size=2))
    with open(f"{out}.{rank}", "w") as file:
        json.dump(result, file)
    dist.destroy_process_group()


def test_validation_figures_of_two_processes_cover_the_whole_set(tmp_path):
    model, data = _scored_set()
    alone = validate(model, DataLoader(data, batch_size=4), torch.device("cpu"))
    torch.multiprocessing.spawn(_validate_share, args=(str(tmp_path / "result"),), nprocs=2)
    for rank in (0, 1):  # every process gets the same figures, so they stop early together
        shared = json.loads((tmp_path / f"result.{rank}").read_text())
        assert shared == pytest.approx(alone)


def _share_running_statistics(rank: int, out: str) -> None:
    _meet(rank, out)
    norm = nn.BatchNorm2d(3)
    norm.running_mean.fill_(rank + 1.0)  # as after each process's own last training step
    share_buffers(norm, World(rank=rank, size=2))
    torch.save(norm.state_dict(), f"{out}.{rank}")
    dist.destroy_process_group()


def test_every_process_validates_with_rank_0s_batchnorm_statistics(tmp_path):
    torch.multiprocessing.spawn(_share_running_statistics, args=(str(tmp_path / "norm"),), nprocs=2)
    for rank in (0, 1):
        assert torch.equal(torch.load(tmp_path / f"norm.{rank}")["running_mean"], torch.ones(3))
