"""Scores over candidate lists: similarity matrices, listwise KL with masked candidates, RankNet.

Conventions: scores are (B, N), one row per query (or anchor) and one column per candidate;
`mask` (B, N) marks the real candidates (padding or an excluded diagonal is false). Per-row values are
reduced over the rows that have at least one valid candidate (or pair) by `reduce_positions` ("mean",
0 when no row is valid; "sum"; "none"). Temperatures divide the scores; no T^2 factor here (methods
that follow a paper doing so say it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.losses.reduction import reduce_positions, upcast

SIMILARITIES = ("cosine", "dot")


def similarity_matrix(a: Tensor, b: Tensor, similarity: str = "cosine") -> Tensor:
    """(B, D) x (N, D) -> (B, N): cosine similarities, or dot products."""
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity={similarity!r}: expected one of {SIMILARITIES}")
    a, b = upcast(a), upcast(b)
    if similarity == "cosine":
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    return a @ b.T


def candidate_mask(scores: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return torch.ones_like(scores, dtype=torch.bool)
    if mask.shape != scores.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)} but the scores have {tuple(scores.shape)}")
    return mask.to(torch.bool)


def masked_log_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """log_softmax over the valid candidates of each row; masked entries get a finite, ignorable value."""
    return upcast(scores).masked_fill(~mask, torch.finfo(upcast(scores).dtype).min).log_softmax(-1)


def listwise_kl(student_scores: Tensor, teacher_scores: Tensor, *, temperature: float = 1.0,
                mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """KL(p_t || p_s) per row, p = softmax over the row's valid candidates of scores / temperature.

    Args:
        student_scores: (B, N) student scores.
        teacher_scores: (B, N) teacher scores.
        temperature: both are divided by it. No T^2.
        mask: optional bool (B, N) of valid candidates; a row without any gives 0 and is not counted.
        reduction: "mean" over rows with a valid candidate, "sum", or "none" ((B,)).

    Returns:
        A scalar (or (B,)); 0 when the rows agree up to a per-row shift, never negative.
    """
    valid = candidate_mask(student_scores, mask)
    s_logp = masked_log_softmax(student_scores / temperature, valid)
    t_logp = masked_log_softmax(teacher_scores / temperature, valid)
    terms = torch.where(valid, t_logp.exp() * (t_logp - s_logp), torch.zeros_like(s_logp))
    return reduce_positions(terms.sum(-1), valid.any(-1), reduction)


def ranknet(student_scores: Tensor, target_scores: Tensor, *, soft: bool = True, mask: Tensor | None = None,
            reduction: str = "mean") -> Tensor:
    """RankNet pairwise cross-entropy ("Learning to Rank using Gradient Descent", Burges et al., ICML 2005).

    For every pair i < j of valid candidates of a row, P_ij = sigmoid(s_i - s_j) is the student's
    probability that i ranks above j, and the target is P*_ij = sigmoid(t_i - t_j) (soft, DeAR's official
    code) or (1 + sign(t_i - t_j)) / 2 (hard, Burges' labels: 1, 1/2 for ties, 0). Per row: the mean of
    -P* log P - (1 - P*) log(1 - P) over its valid pairs. A cross-entropy, so not 0 at s = t, but with
    soft targets its gradient is 0 there (the minimum).

    Args:
        student_scores: (B, N).
        target_scores: (B, N) teacher scores or relevance labels (no gradient).
        soft: sigmoid targets (True) or Burges' hard ones (False).
        mask: optional bool (B, N) of valid candidates.
        reduction: "mean" over rows with a valid pair, "sum", or "none" ((B,)).
    """
    valid = candidate_mask(student_scores, mask)
    s, t = upcast(student_scores), upcast(target_scores).detach()
    diff_s, diff_t = s[:, :, None] - s[:, None, :], t[:, :, None] - t[:, None, :]
    target = torch.sigmoid(diff_t) if soft else (1 + torch.sign(diff_t)) / 2
    upper = torch.ones_like(diff_s, dtype=torch.bool).triu(1)
    pairs = upper & valid[:, :, None] & valid[:, None, :]
    bce = F.binary_cross_entropy_with_logits(diff_s, target, reduction="none").masked_fill(~pairs, 0.0)
    count = pairs.sum((1, 2))
    return reduce_positions(bce.sum((1, 2)) / count.clamp_min(1), count > 0, reduction)
