"""Margin-MSE: the student reproduces the teacher's score margin between a positive and a negative.

Paper: "Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge Distillation",
Hofstätter, Althammer, Schröder, Sertkan, Hanbury, 2020 (arXiv:2010.02666):

    L = mean_b ( (s(q, p+) - s(q, p-)) - (t(q, p+) - t(q, p-)) )^2

Only the margin is matched, not the raw scores, so teacher and student may score on different scales
(a cross-encoder's logits vs a bi-encoder's dot products).
"""
from __future__ import annotations

from torch import Tensor

from distill.losses.reduction import reduce_positions, upcast


def margin_mse(student_positive: Tensor, student_negative: Tensor, teacher_positive: Tensor, teacher_negative: Tensor,
               *, mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Squared difference of the student's and the teacher's margins, per triple.

    Args:
        student_positive, student_negative: (B,) student scores s(q, p+), s(q, p-).
        teacher_positive, teacher_negative: (B,) teacher scores (no gradient needed).
        mask: optional bool (B,) of valid triples.
        reduction: "mean" over valid triples (0 if none), "sum", or "none" ((B,)).

    Returns:
        A scalar (or (B,)); 0 when the margins agree, never negative.
    """
    student_margin = upcast(student_positive) - upcast(student_negative)
    teacher_margin = upcast(teacher_positive) - upcast(teacher_negative)
    return reduce_positions((student_margin - teacher_margin).pow(2), mask, reduction)
