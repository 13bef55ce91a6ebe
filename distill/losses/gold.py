"""GOLD's hybrid cross-tokenizer loss (TRL, `trl.experimental.gold`, 2025): JSD where the vocabularies
agree, sorted L1 (ULD) where they do not.

Per aligned span (rows merged as in `distill.losses.uld.merge_span_rows`):
  matched:   generalized JSD over the K vocabulary entries whose strings are identical in both
             vocabularies, on the merged probabilities as they are (not renormalised; log of
             max(p, 1e-8)), with TRL's beta convention (0 = forward KL, 1 = reverse KL);
  unmatched: the sorted L1 of the remaining columns of each side;
  loss_span = w_m * matched + w_u * unmatched, with TRL's adaptive default w_m = K / Vt, w_u = 1 - w_m.
No temperature is applied here (the rows are already probabilities). Shapes: student rows
(G, Vs), teacher rows (G, Vt); returns (G,).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from distill.losses.uld import sorted_l1

LOG_EPS = 1e-8


def jsd_on_probs(student_probs: Tensor, teacher_probs: Tensor, beta: float) -> Tensor:
    """(G,) generalized JSD summed over columns of (possibly unnormalised) probability rows."""
    ls, lt = student_probs.clamp_min(LOG_EPS).log(), teacher_probs.clamp_min(LOG_EPS).log()
    if beta == 0.0:
        return (lt.exp() * (lt - ls)).sum(-1)
    if beta == 1.0:
        return (ls.exp() * (ls - lt)).sum(-1)
    lm = torch.logsumexp(torch.stack([ls + math.log1p(-beta), lt + math.log(beta)]), dim=0)
    return (beta * lt.exp() * (lt - lm) + (1 - beta) * ls.exp() * (ls - lm)).sum(-1)


def hybrid_weights(n_matched: int, teacher_vocab: int, matched_weight: float | None,
                   unmatched_weight: float | None) -> tuple[float, float]:
    """(w_m, w_u): given, or TRL's adaptive K / Vt and 1 - K / Vt."""
    if matched_weight is None:
        w = n_matched / max(1, teacher_vocab)
        return w, 1.0 - w
    return matched_weight, unmatched_weight if unmatched_weight is not None else 1.0 - matched_weight


def gold_hybrid(student_rows: Tensor, teacher_rows: Tensor, matched_student: Tensor, matched_teacher: Tensor, *,
                beta: float = 0.5, matched_weight: float | None = None,
                unmatched_weight: float | None = None) -> Tensor:
    """(G,) w_m * JSD(matched columns) + w_u * sorted-L1(unmatched columns) per span (module docstring)."""
    w_m, w_u = hybrid_weights(len(matched_teacher), teacher_rows.shape[-1], matched_weight, unmatched_weight)
    matched = jsd_on_probs(student_rows[:, matched_student], teacher_rows[:, matched_teacher], beta)
    if len(matched_student) >= student_rows.shape[-1] or len(matched_teacher) >= teacher_rows.shape[-1]:
        return w_m * matched + w_u * torch.zeros_like(matched)
    # the student's unmatched columns taken out, the teacher's zeroed in place of a 262k-wide gather: after
    # sorting, the zeros sit where the zero padding of the narrower side would, so the sorted L1 is that of
    # the unmatched columns alone (and the teacher's partial sort only needs the student's narrower width)
    keep = torch.ones(student_rows.shape[-1], dtype=torch.bool, device=student_rows.device)
    keep[matched_student] = False
    unmatched = sorted_l1(student_rows[:, keep], teacher_rows.index_fill(1, matched_teacher, 0.0))
    return w_m * matched + w_u * unmatched
