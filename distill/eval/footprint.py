"""What a model costs: parameters, bytes on disk, CPU latency."""
from __future__ import annotations

import statistics
import time

import torch
from torch import Tensor, nn

from distill.modes import eval_mode


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def cpu_latency(model: nn.Module, example: Tensor, runs: int = 50, warmup: int = 5) -> float:
    """Median seconds of one forward of `example` (batch of 1) in eval mode on the CPU."""
    times = []
    with eval_mode(model):
        for _ in range(warmup):
            model(example)
        for _ in range(runs):
            start = time.perf_counter()
            model(example)
            times.append(time.perf_counter() - start)
    return statistics.median(times)
