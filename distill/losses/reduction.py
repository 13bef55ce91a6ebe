"""The one reduction convention shared by every per-position loss.

Per-position values (one per sample, or one per token) are reduced over the positions where the
boolean `mask` is true:
  - "mean": sum over valid positions / number of valid positions (exactly 0 when none is valid),
  - "sum":  sum over valid positions,
  - "none": the per-position values, with masked positions set to exactly 0.
Under gradient accumulation or data parallelism each loss still returns the mean over its own
micro-batch; the Trainer (`distill.train.core`) multiplies it by that micro-batch's share of the
step's valid positions (`objective.count`, summed over micro-batches and all-reduced over ranks),
so the accumulated gradient is that of the mean over the whole global batch. The fused LM loss
also accepts the global count directly (`normalizer=`).
"""
from __future__ import annotations

import torch
from torch import Tensor

REDUCTIONS = ("mean", "sum", "none")


def upcast(x: Tensor) -> Tensor:
    """At least float32: half and bfloat16 (and integer) tensors become float32, float64 stays float64.

    Every loss computes through this, so low-precision logits get float32 math and float64 inputs
    keep float64 precision (which makes float64 gradient checks meaningful).
    """
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r}: expected one of {REDUCTIONS}")


def check_mask(mask: Tensor | None, positions_shape: torch.Size) -> Tensor | None:
    """Validate `mask` against the per-position shape and return it as bool (or None)."""
    if mask is None:
        return None
    if tuple(mask.shape) != tuple(positions_shape):
        raise ValueError(f"mask has shape {tuple(mask.shape)} but the logits have positions {tuple(positions_shape)}")
    return mask.to(torch.bool)


def reduce_positions(values: Tensor, mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Reduce per-position `values` (any shape) over the positions where `mask` (same shape) is true."""
    check_reduction(reduction)
    mask = check_mask(mask, values.shape)
    if mask is not None:
        # masked_fill (not multiply) so a NaN/inf at a padded position never leaks into the sum
        values = values.masked_fill(~mask, 0.0)
    if reduction == "none":
        return values
    total = values.sum()
    if reduction == "sum":
        return total
    count = values.numel() if mask is None else mask.sum()
    if mask is None:
        return total / max(count, 1)
    return total / count.clamp_min(1).to(total.dtype)
