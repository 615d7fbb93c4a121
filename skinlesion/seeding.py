"""The one function that seeds the global random generators. Everything else draws from a
generator passed in (`seed`, `random_state`, `torch.Generator`)."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
