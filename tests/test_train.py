import itertools
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, write_params

from skinlesion.classes import CLASSES
from skinlesion.config import ParamsError, load_params
from skinlesion.cores import available_cores
from skinlesion.data.arrays import ImageWriter, read_manifest, write_manifest
from skinlesion.data.dataset import ImageArrayDataset
from skinlesion.data.folds import FoldData
from skinlesion.data.metadata import FEATURES
from skinlesion.errors import DataError, TrainingError
from skinlesion.model.architectures import MetadataFusion
from skinlesion.model.checkpoint import load_checkpoint
from skinlesion.training import epoch as one_epoch
from skinlesion.training import loop, trainer
from skinlesion.training.live import MemoryLive
from skinlesion.training.loaders import crowded_cores
from skinlesion.training.loop import fit
from skinlesion.training.params import TrainRun
from skinlesion.training.resume import fingerprint, load_state, save_state


def _tiny_sets(folder, count=16, size=32):
    rng = np.random.default_rng(0)
    manifest = pd.DataFrame(
        {
            "image": [f"ISIC_{i:07d}" for i in range(count)],
            "label": [CLASSES[i % 8] for i in range(count)],
            "lesion_id": "",
            "split": "train",
            "row": np.arange(count),
            "augmented": np.arange(count) >= count // 2,  # the second half: copies of the first
        }
    )
    with ImageWriter(folder / "train.npy", count, size) as writer:
        for row in range(count):
            writer.write(row, rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    (folder / "val.npy").symlink_to(folder / "train.npy")
    write_manifest(manifest, folder / "train.csv")
    write_manifest(manifest, folder / "val.csv")


def _data(folder):
    """_tiny_sets' training (the balanced manifest) and validation images, as one fold."""
    return FoldData(folder, folder / "train.csv", read_manifest(folder / "val.csv"), "val.csv")


def _params(**training):
    params = load_params(TrainRun, REPO / "params.yaml")
    return params.model_copy(
        update={
            "prepare": params.prepare.model_copy(update={"image_size": 32}),
            "training": params.training.model_copy(update={"num_workers": 0, "batch_size": 8, **training}),
        }
    )


def test_early_stopping_ends_training_and_keeps_the_best_epoch(tmp_path):
    _tiny_sets(tmp_path)
    live = MemoryLive()
    params = _params(epochs=6, learning_rate=1e-12, early_stopping_patience=2)  # nothing can improve
    best = fit(params, _data(tmp_path), tmp_path / "model.pt", live)
    assert best["epoch"] == 0 and len(live.history) == 3  # epochs 0, 1, 2, then stop
    info = load_checkpoint(tmp_path / "model.pt")[1]
    assert info.epoch == 0 and info.temperature == 1.0 and 0 < info.unknown_threshold < 1
    assert all(step["train/learning_rate"] == pytest.approx(1e-12) for step in live.history)


def test_cosine_schedule_and_options_run(tmp_path):
    _tiny_sets(tmp_path)
    live = MemoryLive()
    params = _params(
        epochs=3,
        lr_schedule="cosine",
        warmup_epochs=1,
        loss="focal",
        weight_decay=1e-4,
        grad_clip_norm=1.0,
        calibration="temperature",
    )
    best = fit(params, _data(tmp_path), tmp_path / "model.pt", live)
    info = load_checkpoint(tmp_path / "model.pt")[1]
    assert info.temperature == best["temperature"] == live.summary["best"]["temperature"] > 0
    assert info.epoch == best["epoch"]  # the best epoch's weights, calibrated
    assert 0 < info.unknown_threshold == best["unknown_threshold"] < 1 - 1 / len(CLASSES)
    rates = [step["train/learning_rate"] for step in live.history]
    assert rates == pytest.approx([0.5e-4, 1e-4, 1e-4 * 0.5 * (1 + math.cos(math.pi / 2))])
    assert all(math.isfinite(step["train/loss"]) for step in live.history)


def test_a_metadata_model_trains_calibrates_and_says_which_manifest_lacks_metadata(tmp_path):
    _tiny_sets(tmp_path)
    params = _params(epochs=1, calibration="temperature")
    params = params.model_copy(update={"model": params.model.model_copy(update={"use_metadata": True})})
    with pytest.raises(DataError, match=rf"^{tmp_path / 'train.csv'}: no metadata columns"):
        fit(params, _data(tmp_path), tmp_path / "model.pt", MemoryLive())
    manifest = read_manifest(tmp_path / "train.csv")
    write_manifest(manifest.assign(age_approx="", anatom_site_general="", sex=""), tmp_path / "train.csv")
    with pytest.raises(DataError, match=r"model.use_metadata: no training image of .*train.csv has metadata"):
        fit(params, _data(tmp_path), tmp_path / "model.pt", MemoryLive())  # a data root without the metadata CSV
    ages = ["", "30", "85"]  # with gaps, as the official file has them
    metadata = {"age_approx": [ages[i % 3] for i in range(16)], "anatom_site_general": "", "sex": "male"}
    write_manifest(manifest.assign(**metadata), tmp_path / "train.csv")
    write_manifest(manifest.assign(**metadata), tmp_path / "val.csv")
    best = fit(params, _data(tmp_path), tmp_path / "model.pt", MemoryLive())
    model, info = load_checkpoint(tmp_path / "model.pt")
    assert isinstance(model, MetadataFusion) and info.metadata == FEATURES
    assert info.temperature == best["temperature"] > 0


@pytest.mark.parametrize("bad_step", [0, 1])  # 16 images in batches of 8: step 1 is the epoch's last
def test_non_finite_loss_names_epoch_and_step(tmp_path, bad_step):
    _tiny_sets(tmp_path)
    params = _params(epochs=1)
    torch.manual_seed(0)
    original, calls = torch.nn.CrossEntropyLoss.forward, []

    def loss_from(self, logits, targets):
        calls.append(None)
        return original(self, logits, targets) * (float("inf") if len(calls) == bad_step + 1 else 1.0)

    try:
        torch.nn.CrossEntropyLoss.forward = loss_from
        with pytest.raises(
            TrainingError, match=rf"loss is inf at epoch 0, step {bad_step}: lower training.learning_rate"
        ):
            fit(params, _data(tmp_path), tmp_path / "model.pt", MemoryLive())
    finally:
        torch.nn.CrossEntropyLoss.forward = original


def test_each_steps_loss_is_read_only_after_the_next_step_is_queued(tmp_path, monkeypatch):
    """Reading a loss makes the host wait for the device; read one step late, the device is
    never left idle while the host prepares the next step."""
    _tiny_sets(tmp_path, count=24)  # three steps per epoch
    events, original, numbers = [], one_epoch.train_step, itertools.count()

    class Loss:
        def __init__(self, value, step):
            self.value, self.step = value, step

        def item(self):
            events.append(("read", self.step))
            return self.value.item()

    def step(*args, **kwargs):
        loss, logits = original(*args, **kwargs)
        events.append(("step", next(numbers)))
        return Loss(loss, events[-1][1]), logits

    monkeypatch.setattr(one_epoch, "train_step", step)
    fit(_params(epochs=1), _data(tmp_path), tmp_path / "model.pt", MemoryLive())
    assert events == [("step", 0), ("step", 1), ("read", 0), ("step", 2), ("read", 1), ("read", 2)]


def test_loader_workers_that_crowd_the_cores_are_named():
    assert crowded_cores(workers=8, processes=1, cores=16) is None
    assert crowded_cores(workers=1, processes=1, cores=2) is None  # the sample profile here
    message = crowded_cores(workers=16, processes=1, cores=16)
    assert message.startswith(
        "training.num_workers 16 with 1 training process(es) makes 17 busy processes on 16 CPU cores"
    )
    assert message.endswith("Set training.num_workers to at most 15.")
    assert crowded_cores(workers=4, processes=4, cores=16).endswith("at most 3.")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_available_cores_follow_the_affinity_not_the_machine():
    """A scheduler or container that gives the process one core gets one worker per stage, not os.cpu_count()."""
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from skinlesion.cores import available_cores; print(available_cores())"
    )
    narrowed = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert narrowed.stdout.strip() == "1"
    assert available_cores() == len(os.sched_getaffinity(0))


def test_saved_state_is_resumed_only_for_an_unfinished_run_of_the_same_settings(tmp_path):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    path = tmp_path / "state.pt"
    save_state(path, fingerprint="abc", epoch=2, best={"epoch": 1}, complete=False, **parts)
    assert load_state(path, "abc")["epoch"] == 2
    assert load_state(path, "abc")["scaler"] == scaler.state_dict()
    assert load_state(path, "other settings") is None
    save_state(path, fingerprint="abc", epoch=5, best={"epoch": 1}, complete=True, **parts)
    assert load_state(path, "abc") is None  # a finished run starts over
    path.write_bytes(b"not a torch file")
    assert load_state(path, "abc") is None
    assert load_state(tmp_path / "absent.pt", "abc") is None


def test_fingerprint_follows_settings_and_data(tmp_path):
    _tiny_sets(tmp_path)
    params = _params(epochs=3)
    first = fingerprint(params, _data(tmp_path))
    assert fingerprint(params, _data(tmp_path)) == first
    assert fingerprint(_params(epochs=4), _data(tmp_path)) != first
    validation = _data(tmp_path).validation
    other_fold = FoldData(tmp_path, tmp_path / "train.csv", validation.iloc[1:], "another fold")
    assert fingerprint(params, other_fold) != first
    manifest = read_manifest(tmp_path / "train.csv")
    write_manifest(manifest.assign(label="MEL"), tmp_path / "train.csv")
    assert fingerprint(params, _data(tmp_path)) != first


def _fail_in_second_epoch(monkeypatch, error: Exception) -> None:
    """Make the first training step of epoch 1 raise `error`."""
    original = one_epoch.train_step
    calls = {"count": 0}

    def step(*args, **kwargs):
        calls["count"] += 1
        if calls["count"] == 3:  # 16 images in batches of 8: the first step of epoch 1
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(one_epoch, "train_step", step)


def test_a_run_resumed_from_its_saved_state_ends_as_the_uninterrupted_run(tmp_path, monkeypatch):
    """Killed in epoch 1 and resumed from the state saved after epoch 0: the same weights and
    the same curves as a run never interrupted (every draw of an epoch is seeded by the epoch)."""
    _tiny_sets(tmp_path)
    params, data = _params(epochs=3, learning_rate=1e-3), _data(tmp_path)
    whole = MemoryLive()
    fit(params, data, tmp_path / "whole.pt", whole, tmp_path / "whole_state.pt")

    with monkeypatch.context() as patch:
        _fail_in_second_epoch(patch, KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            fit(params, data, tmp_path / "resumed.pt", MemoryLive(), tmp_path / "state.pt")
    state = load_state(tmp_path / "state.pt", fingerprint(params, data))
    assert state["epoch"] == 0
    resumed = MemoryLive()
    best = fit(params, data, tmp_path / "resumed.pt", resumed, tmp_path / "state.pt", state)
    assert resumed.history == whole.history[1:]  # epochs 1 and 2, logged from step 1 on
    assert best == whole.summary["best"]
    expected = torch.load(tmp_path / "whole.pt", weights_only=True)
    got = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert got.keys() == expected.keys()
    assert all(torch.equal(got["state_dict"][key], value) for key, value in expected["state_dict"].items())


def test_out_of_memory_says_which_params_to_lower_and_that_the_run_resumes(tmp_path, monkeypatch):
    _tiny_sets(tmp_path)
    params = _params(epochs=3)
    _fail_in_second_epoch(monkeypatch, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    with pytest.raises(TrainingError) as caught:
        fit(
            params,
            _data(tmp_path),
            tmp_path / "model.pt",
            MemoryLive(),
            state_path=tmp_path / "state.pt",
        )
    message = str(caught.value)
    assert "out of memory in epoch 1 with training.batch_size 8 (8 per process), prepare.image_size 32" in message
    assert "lower training.batch_size or prepare.image_size, or use training.precision bf16" in message
    assert "dvc repro with the same params resumes from epoch 1" in message
    run = fingerprint(params, _data(tmp_path))
    assert load_state(tmp_path / "state.pt", run)["epoch"] == 0  # what the message promises is there


def test_other_errors_pass_through_unchanged(tmp_path, monkeypatch):
    _tiny_sets(tmp_path)
    _fail_in_second_epoch(monkeypatch, RuntimeError("something else"))
    with pytest.raises(RuntimeError, match="^something else$"):
        fit(_params(epochs=2), _data(tmp_path), tmp_path / "model.pt", MemoryLive())


def test_a_dying_loader_worker_says_what_to_change(tmp_path, monkeypatch):
    _tiny_sets(tmp_path)
    armed = {"kill": False}  # set after epoch 0; the forked workers of epoch 1 see it
    original_validate, original_item = one_epoch.validate, ImageArrayDataset.__getitem__

    def validate_then_arm(*args, **kwargs):
        result = original_validate(*args, **kwargs)
        armed["kill"] = True
        return result

    def item(self, index):
        if armed["kill"] and torch.utils.data.get_worker_info() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return original_item(self, index)

    monkeypatch.setattr(one_epoch, "validate", validate_then_arm)
    monkeypatch.setattr(ImageArrayDataset, "__getitem__", item)
    with pytest.raises(TrainingError) as caught:
        fit(
            _params(epochs=3, num_workers=1),
            _data(tmp_path),
            tmp_path / "model.pt",
            MemoryLive(),
            state_path=tmp_path / "state.pt",
        )
    message = str(caught.value)
    assert message.startswith("a data loader worker died in epoch 1 (DataLoader worker (pid")
    assert "lower training.num_workers (1) or training.batch_size (8)" in message
    assert "resumes from epoch 1" in message


def _small_net(name: str, num_classes: int, weights: str, metadata_features: int = 0) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, num_classes),
    )


def test_compiled_training_matches_eager_and_saves_the_plain_modules_weights(tmp_path, monkeypatch):
    _tiny_sets(tmp_path)
    monkeypatch.setattr(trainer, "build_model", _small_net)  # compiling DenseNet121 takes minutes on a CPU
    monkeypatch.setattr(loop, "finish_model", lambda *args: {})  # it reloads the file as a DenseNet121
    runs = {}
    for mode in ("none", "default"):
        live = MemoryLive()
        fit(
            _params(epochs=2, compile=mode),
            _data(tmp_path),
            tmp_path / f"{mode}.pt",
            live,
            state_path=tmp_path / f"{mode}-state.pt",
        )
        runs[mode] = live.history
        saved = torch.load(tmp_path / f"{mode}.pt", weights_only=True)["state_dict"]
        state = torch.load(tmp_path / f"{mode}-state.pt", weights_only=True)["model"]
        assert set(saved) == set(state) == set(_small_net("", 8, "").state_dict())  # no "_orig_mod." keys
    for eager, compiled in zip(runs["none"], runs["default"]):
        assert compiled["train/loss"] == pytest.approx(eager["train/loss"], rel=1e-4)
        assert compiled["val/loss"] == pytest.approx(eager["val/loss"], rel=1e-4)


def test_augmenting_on_the_device_trains_and_differs_from_the_loaders_draws(tmp_path):
    _tiny_sets(tmp_path)
    runs = {}
    for place in ("loader", "device"):
        live = MemoryLive()
        fit(_params(epochs=2, augment_on=place), _data(tmp_path), tmp_path / f"{place}.pt", live)
        runs[place] = [step["train/loss"] for step in live.history]
        assert all(math.isfinite(loss) for loss in runs[place])
    assert runs["device"] != runs["loader"]  # its own random draws, not the workers'
    again = MemoryLive()
    fit(_params(epochs=2, augment_on="device"), _data(tmp_path), tmp_path / "again.pt", again)
    assert [step["train/loss"] for step in again.history] == runs["device"]  # seeded per epoch


def test_light_real_image_augmentation_needs_the_loader(tmp_path):
    overrides = {"augmentation": {"real_images": "light"}, "training": {"augment_on": "device"}}
    with pytest.raises(ParamsError, match="augmentation.real_images: only 'augment' works with training.augment_on"):
        load_params(TrainRun, write_params(tmp_path, overrides))
