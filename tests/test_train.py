import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks.gpu_epoch import RecordingLive
from stages.model import load_checkpoint
from stages.params import CLASSES, load_params
from stages.resume import fingerprint, load_state, save_state
from stages.store import ImageWriter, write_manifest
from stages.train import fit

from conftest import REPO


def _tiny_sets(folder, count=16, size=32):
    rng = np.random.default_rng(0)
    manifest = pd.DataFrame({"image": [f"ISIC_{i:07d}" for i in range(count)], "label": [CLASSES[i % 8] for i in range(count)], "lesion_id": "", "split": "train", "row": np.arange(count)})
    with ImageWriter(folder / "train.npy", count, size) as writer:
        for row in range(count):
            writer.write(row, rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    (folder / "val.npy").symlink_to(folder / "train.npy")
    write_manifest(manifest, folder / "train.csv")
    write_manifest(manifest, folder / "val.csv")


def _params(**training):
    params = load_params(REPO / "params.yaml")
    return dataclasses.replace(
        params,
        prepare=dataclasses.replace(params.prepare, image_size=32),
        training=dataclasses.replace(params.training, num_workers=0, batch_size=8, **training),
    )


def test_early_stopping_ends_training_and_keeps_the_best_epoch(tmp_path):
    _tiny_sets(tmp_path)
    live = RecordingLive()
    params = _params(epochs=6, learning_rate=1e-12, early_stopping_patience=2)  # nothing can improve
    best = fit(params, tmp_path, tmp_path, tmp_path / "model.pt", live)
    assert best["epoch"] == 0 and len(live.history) == 3  # epochs 0, 1, 2, then stop
    assert load_checkpoint(tmp_path / "model.pt")[1]["epoch"] == 0
    assert all(step["train/learning_rate"] == pytest.approx(1e-12) for step in live.history)


def test_cosine_schedule_and_options_run(tmp_path):
    _tiny_sets(tmp_path)
    live = RecordingLive()
    params = _params(epochs=3, lr_schedule="cosine", warmup_epochs=1, loss="focal", weight_decay=1e-4, grad_clip_norm=1.0)
    fit(params, tmp_path, tmp_path, tmp_path / "model.pt", live)
    rates = [step["train/learning_rate"] for step in live.history]
    assert rates == pytest.approx([0.5e-4, 1e-4, 1e-4 * 0.5 * (1 + math.cos(math.pi / 2))])
    assert all(math.isfinite(step["train/loss"]) for step in live.history)


def test_non_finite_loss_names_epoch_and_step(tmp_path):
    _tiny_sets(tmp_path)
    params = _params(epochs=1)
    torch.manual_seed(0)
    original = torch.nn.CrossEntropyLoss.forward
    try:
        torch.nn.CrossEntropyLoss.forward = lambda self, logits, targets: original(self, logits, targets) * float("nan")
        with pytest.raises(FloatingPointError, match=r"loss is nan at epoch 0, step 0: lower training.learning_rate"):
            fit(params, tmp_path, tmp_path, tmp_path / "model.pt", RecordingLive())
    finally:
        torch.nn.CrossEntropyLoss.forward = original


def test_saved_state_is_resumed_only_for_an_unfinished_run_of_the_same_settings(tmp_path):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    path = tmp_path / "state.pt"
    save_state(path, fingerprint="abc", epoch=2, best={"epoch": 1}, complete=False, model=model, optimizer=optimizer, scheduler=scheduler)
    assert load_state(path, "abc")["epoch"] == 2
    assert load_state(path, "other settings") is None
    save_state(path, fingerprint="abc", epoch=5, best={"epoch": 1}, complete=True, model=model, optimizer=optimizer, scheduler=scheduler)
    assert load_state(path, "abc") is None  # a finished run starts over
    path.write_bytes(b"not a torch file")
    assert load_state(path, "abc") is None
    assert load_state(tmp_path / "absent.pt", "abc") is None


def test_fingerprint_follows_settings_and_data(tmp_path):
    manifest = tmp_path / "train.csv"
    manifest.write_text("image,label\nISIC_0000001,NV\n")
    params = _params(epochs=3)
    first = fingerprint(params, [manifest])
    assert fingerprint(params, [manifest]) == first
    assert fingerprint(_params(epochs=4), [manifest]) != first
    manifest.write_text("image,label\nISIC_0000001,MEL\n")
    assert fingerprint(params, [manifest]) != first
