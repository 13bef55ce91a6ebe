"""Fixed random subsets of a dataset, shared by every task's `train_subset` / `max_*_examples`."""
from __future__ import annotations

import torch


def subset_indices(n: int, size: int) -> torch.Tensor:
    """A fixed random subset of range(n) (seed 0, whatever the run seed), in the original order.

    Random, not the first `size`: image trees are stored class by class and documents sorted by
    name, so a prefix would hold only the first classes or files. Nested: a smaller subset is part
    of every larger one.
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    return order[:size].sort().values
