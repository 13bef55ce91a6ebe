"""Universal Logit Distillation and its span-merged form (the ULD part of TRL's GOLD).

ULD (Boizard et al., "Towards Cross-Tokenizer Distillation: the Universal Logit Distillation Loss
for LLMs", 2024) compares two distributions over *different* vocabularies by their sorted
probabilities: sort each row in descending order, zero-pad the narrower vocabulary, and take the
L1 distance: ULD(p_s, p_t) = sum_i |sort(p_s)_i - sort(p_t)_i|. No temperature factor, no T^2.

GOLD's extension aligns spans of shared text instead of positions and merges the probabilities
inside a multi-token span into one (unnormalised) row: the base row's distribution times the
probabilities of the span's other tokens (`merge_span_rows`, see `distill.losses.aligned` for which
rows: "bayesian" or "observed").
"""
from __future__ import annotations

import torch
from torch import Tensor

MERGE_EPS = 1e-8  # TRL's clamp on the scalar factors of a merged span


def merge_span_rows(probs: Tensor, span: Tensor, base: Tensor, tokens: Tensor, n_spans: int) -> Tensor:
    """(G, V) merged rows: per span, its base row times prod_{other rows} max(p_row(token_row), 1e-8).

    Args:
        probs: (n, V) row distributions; span: (n,) span index 0..G-1 of each row (sorted);
        base: (n,) bool, one true row per span; tokens: (n,) the token each row scores.
    """
    scalar = probs.gather(1, tokens[:, None]).squeeze(1).clamp_min(MERGE_EPS)
    log_scalar = torch.where(base, torch.zeros_like(scalar), scalar.log())
    factor = torch.zeros(n_spans, dtype=probs.dtype, device=probs.device).index_add(0, span, log_scalar).exp()
    # in place on the gathered copy: one (G, V) buffer, not two (index_select's backward does not need it)
    return probs.index_select(0, base.nonzero().squeeze(1)).mul_(factor[:, None])


def sorted_l1(student_probs: Tensor, teacher_probs: Tensor) -> Tensor:
    """(G,) sum_i |sort(p_s)_i - sort(p_t)_i| per row, the narrower side zero-padded (ULD's distance).

    Computed without padding or sorting the wider side in full: past the narrower width w the
    padded side is 0, so those terms add up to the wider side's mass outside its top w, and only
    its top w (a partial sort) is needed. Exact; 4x cheaper than a full sort of a 262k vocabulary.
    """
    narrow, wide = (student_probs, teacher_probs) if student_probs.shape[-1] <= teacher_probs.shape[-1] \
        else (teacher_probs, student_probs)
    w = narrow.shape[-1]
    narrow_sorted = narrow.sort(dim=-1, descending=True).values
    wide_top = wide.topk(w, dim=-1).values if wide.shape[-1] > w else wide.sort(dim=-1, descending=True).values
    outside = (wide.sum(-1) - wide_top.sum(-1)).clamp_min(0)  # float32: absolute error ~1e-7 on a mass <= 1
    return (narrow_sorted - wide_top).abs().sum(-1) + outside


def uld(student_logits: Tensor, teacher_logits: Tensor, *, student_temperature: float = 1.0,
        teacher_temperature: float = 1.0) -> Tensor:
    """(n,) ULD per aligned position: sorted-probability L1 of softmax(z_s / T_s) and softmax(z_t / T_t).

    Shapes: student (n, Vs), teacher (n, Vt); any Vs, Vt. Zero on identical distributions.
    """
    p_s = torch.softmax(student_logits.float() / student_temperature, dim=-1)
    p_t = torch.softmax(teacher_logits.float() / teacher_temperature, dim=-1)
    return sorted_l1(p_s, p_t)
