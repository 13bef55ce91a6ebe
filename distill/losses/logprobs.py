"""Log-probability pairs and the per-position KL: the base every divergence is written on.

`log_probs_pair` turns two logit tensors into log-softmaxes (at least float32) with masked
positions neutralised; `kl_terms` is sum_c p (log p - log q) with 0 log 0 = 0; `dense_divergence`
applies a registered divergence's per-position `terms` to logits and reduces them with the one
convention of `distill.losses.reduction`.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.losses.reduction import check_mask, check_reduction, reduce_positions, upcast


def log_probs_pair(student_logits: Tensor, teacher_logits: Tensor, temperature: float,
                   mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Log-softmax (at least float32) of both logit tensors at `temperature`, after checking shapes.

    Masked positions (`mask` false) are replaced by zero logits first, on both sides: whatever
    they held (an all -inf teacher row, NaN), they then contribute exactly zero to values and
    gradients (`torch.where` sends a zero gradient to the unselected branch, never 0 * NaN).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} must have the same shape")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    student_logits, teacher_logits = upcast(student_logits), upcast(teacher_logits)
    mask = check_mask(mask, student_logits.shape[:-1])
    if mask is not None and not bool(mask.all()):
        keep = mask[..., None]
        student_logits = torch.where(keep, student_logits, torch.zeros_like(student_logits))
        teacher_logits = torch.where(keep, teacher_logits, torch.zeros_like(teacher_logits))
    s = F.log_softmax(student_logits / temperature, dim=-1)
    t = F.log_softmax(teacher_logits / temperature, dim=-1)
    return s, t


def dense_divergence(terms: Callable[..., Tensor], student_logits: Tensor, teacher_logits: Tensor, *, temperature: float,
                     mask: Tensor | None, reduction: str, **options: Any) -> Tensor:
    """A registered divergence's `terms` on two logit tensors, reduced with the shared convention."""
    check_reduction(reduction)
    s, t = log_probs_pair(student_logits, teacher_logits, temperature, mask)
    return _reduce(terms(s, t, **options), mask, reduction)


def kl_terms(p_logp: Tensor, q_logp: Tensor) -> Tensor:
    """sum_c p (log p - log q) over the last axis, with 0 log 0 = 0 (p given as log-probs)."""
    p = p_logp.exp()
    # where-then-multiply, not multiply-then-where: where p = 0 the difference may be -inf - -inf = NaN
    # (masked vocabulary, empty tail buckets), and a NaN inside the unselected branch of a product
    # still turns its zero gradient into NaN
    diff = torch.where(p > 0, p_logp - q_logp, torch.zeros_like(p))
    return (p * diff).sum(-1)


def _reduce(per_position: Tensor, mask: Tensor | None, reduction: str) -> Tensor:
    check_reduction(reduction)
    return reduce_positions(per_position, check_mask(mask, per_position.shape), reduction)


