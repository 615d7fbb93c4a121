"""The fold models of cross-validation as one model: class probabilities averaged over them."""

from __future__ import annotations

import math

import torch
from torch import nn

from skinlesion.model.inference import forward


class FoldEnsemble(nn.Module):
    """Log class probabilities, averaged in probability space over the fold models `members`,
    each with its own calibration temperature. Its output is taken as logits downstream: the
    softmax of log probabilities is the probabilities themselves."""

    def __init__(self, members: list[nn.Module], temperatures: list[float]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.temperatures = list(temperatures)

    def member_log_probabilities(self, images: torch.Tensor, metadata: torch.Tensor | None = None) -> torch.Tensor:
        """(members, N, C): each fold model's log class probabilities."""
        return torch.stack(
            [
                torch.log_softmax(forward(member, images, metadata).float() / temperature, dim=1)
                for member, temperature in zip(self.members, self.temperatures)
            ]
        )

    def forward(self, images: torch.Tensor, metadata: torch.Tensor | None = None) -> torch.Tensor:
        return torch.logsumexp(self.member_log_probabilities(images, metadata), dim=0) - math.log(len(self.members))


def fold_models(model: nn.Module) -> list[nn.Module]:
    """A FoldEnsemble's fold models, or a single model as a list of one."""
    return list(model.members) if isinstance(model, FoldEnsemble) else [model]
