import numpy as np
import pytest
import torch
from conftest import REPO
from torch import nn

from skinlesion.config import load_params
from skinlesion.training.optim import FocalLoss, class_weights, learning_rate_factor, make_criterion, make_optimizer
from skinlesion.training.params import TrainRun

SETTINGS = load_params(TrainRun, REPO / "params.yaml").training


def test_the_defaults_are_the_published_recipe():
    criterion = make_criterion(SETTINGS, np.array([0, 1, 1]), 8)
    assert type(criterion) is nn.CrossEntropyLoss and criterion.weight is None and criterion.label_smoothing == 0
    optimizer, scheduler = make_optimizer(nn.Linear(2, 2), SETTINGS)
    assert type(optimizer) is torch.optim.Adam and optimizer.param_groups[0]["lr"] == 1e-4
    assert optimizer.param_groups[0]["weight_decay"] == 0
    assert all(learning_rate_factor(epoch, SETTINGS) == 1 for epoch in range(SETTINGS.epochs))


def test_focal_loss_with_gamma_zero_is_cross_entropy_and_down_weights_easy_images():
    torch.manual_seed(0)
    logits, targets = torch.randn(16, 8), torch.randint(0, 8, (16,))
    assert torch.allclose(FocalLoss(0.0)(logits, targets), nn.functional.cross_entropy(logits, targets))
    easy = torch.zeros(1, 8)
    easy[0, 3] = 6.0
    assert FocalLoss(2.0)(easy, torch.tensor([3])) < 1e-3 * nn.functional.cross_entropy(easy, torch.tensor([3]))


def test_class_weights_are_inverse_frequency():
    weights = class_weights(np.array([0, 0, 0, 1]), 3)
    assert weights.tolist() == pytest.approx([4 / 9, 4 / 3, 0.0])
    assert class_weights(np.array([0, 1, 2]), 3).tolist() == pytest.approx([1, 1, 1])


def test_cosine_schedule_warms_up_then_decays():
    settings = SETTINGS.model_copy(update={"lr_schedule": "cosine", "warmup_epochs": 2, "epochs": 10})
    factors = [learning_rate_factor(epoch, settings) for epoch in range(10)]
    assert factors[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert all(a > b for a, b in zip(factors[2:], factors[3:]))
    assert factors[-1] > 0


def test_weighted_cross_entropy_weighs_each_image_by_its_class():
    settings = SETTINGS.model_copy(update={"loss": "weighted_cross_entropy"})
    targets = np.array([0, 0, 0, 1])  # the training labels: class 0 three times as common
    criterion = make_criterion(settings, targets, 3)
    logits, labels = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), torch.tensor([0, 1])
    per_image = -torch.log_softmax(logits, dim=1)[[0, 1], [0, 1]]
    weights = torch.tensor([4 / 9, 4 / 3])  # inverse frequency of each image's class
    assert criterion(logits, labels).item() == pytest.approx(((weights * per_image).sum() / weights.sum()).item())


def test_label_smoothing_spreads_its_share_over_every_class():
    settings = SETTINGS.model_copy(update={"label_smoothing": 0.1})
    criterion = make_criterion(settings, np.array([0, 1]), 4)
    logits, labels = torch.tensor([[3.0, 1.0, 0.0, -1.0]]), torch.tensor([0])
    log_p = torch.log_softmax(logits, dim=1)[0]
    expected = -(0.9 * log_p[0] + 0.1 * log_p.mean())  # 0.9 on the label, 0.1 spread evenly over 4 classes
    assert criterion(logits, labels).item() == pytest.approx(expected.item())
