"""The fold models of cross-validation as one model: class probabilities averaged over them."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from skinlesion.model.inference import TTA, device_batches, log_probabilities, mean_probability


class FoldEnsemble(nn.Module):
    """Log class probabilities, averaged in probability space over the fold models `members`,
    each with its own calibration temperature. Its output is taken as logits downstream: the
    softmax of log probabilities is the probabilities themselves."""

    def __init__(self, members: list[nn.Module], temperatures: list[float]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.temperatures = list(temperatures)

    def forward(self, images: torch.Tensor, metadata: torch.Tensor | None = None) -> torch.Tensor:
        logs = [
            log_probabilities(member, images, temperature=temperature, metadata=metadata)
            for member, temperature in zip(self.members, self.temperatures)
        ]
        return mean_probability(torch.stack(logs))


def fold_models(model: nn.Module) -> list[nn.Module]:
    """A FoldEnsemble's fold models, or a single model as a list of one."""
    return list(model.members) if isinstance(model, FoldEnsemble) else [model]


@torch.no_grad()
def fold_predictions(
    ensemble: FoldEnsemble, loader: DataLoader, device: torch.device, tta: TTA
) -> tuple[np.ndarray, np.ndarray]:
    """Each fold model's log class probabilities over `loader` (with its own temperature and
    the same TTA), as (folds, N, C), and the true class indices, in one pass over the loader.
    Their mean_probability is the ensemble's prediction."""
    ensemble.eval()
    logs, targets = [], []
    for images, labels, metadata in device_batches(loader, device):
        members = zip(ensemble.members, ensemble.temperatures)
        logs.append(torch.stack([log_probabilities(m, images, tta, t, metadata) for m, t in members]))
        targets.append(labels)
    return torch.cat(logs, dim=1).cpu().numpy(), torch.cat(targets).numpy()
