"""Token-level divergences for LLM distillation, with `kl`'s conventions.

Every function takes (student_logits, teacher_logits, *, temperature=1.0, mask=None,
reduction="mean") over (B, T, V) or (N, V): distributions softmax(logits / T) in at least float32,
summed over the vocabulary, then mean over positions where `mask` is true (exactly 0 when none is),
"sum", or "none". Teacher "logits" may equally be log-probabilities (softmax is shift-invariant).
None multiplies by T^2. Each is registered (`distill.losses.registry`) by its `*_terms` function
over log-prob pairs, with a config naming its options, so the fused loss, the methods and the
recipes share one definition.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from distill.config import option
from distill.losses.divergences import dense_divergence, kl_terms
from distill.losses.registry import DivergenceConfig, register_divergence


def _mixture_log(a_logp: Tensor, b_logp: Tensor, weight_a: float) -> Tensor:
    """log(w p_a + (1 - w) p_b) from log-probs, stable (logsumexp).

    Entries where both are -inf (masked vocabulary, empty tail buckets) stay -inf with a zero
    gradient: logsumexp's backward is NaN there even for a zero upstream gradient.
    """
    empty = torch.isneginf(a_logp) & torch.isneginf(b_logp)
    a = torch.where(empty, torch.zeros_like(a_logp), a_logp)
    b = torch.where(empty, torch.zeros_like(b_logp), b_logp)
    mix = torch.logsumexp(torch.stack([a + math.log(weight_a), b + math.log1p(-weight_a)]), dim=0)
    return torch.where(empty, torch.full_like(mix, float("-inf")), mix)


@dataclass(kw_only=True)
class JSDConfig(DivergenceConfig):
    name: str = "jsd"
    beta: float = option(0.5, min=0.0, max=1.0, help="M = beta p_t + (1 - beta) p_s (0 = kl, 1 = reverse_kl)")


@register_divergence("jsd", config=JSDConfig)
def jsd_terms(s_logp: Tensor, t_logp: Tensor, *, beta: float = 0.5) -> Tensor:
    """Generalized JSD (GKD, ICLR 2024) per position; beta = 0 is forward KL, 1 reverse KL (TRL's convention)."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if beta == 0.0:
        return kl_terms(t_logp, s_logp)
    if beta == 1.0:
        return kl_terms(s_logp, t_logp)
    m = _mixture_log(t_logp, s_logp, beta)
    return beta * kl_terms(t_logp, m) + (1 - beta) * kl_terms(s_logp, m)


def jsd(student_logits: Tensor, teacher_logits: Tensor, *, beta: float = 0.5, temperature: float = 1.0,
        mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Generalized Jensen-Shannon divergence (GKD, Agarwal et al., ICLR 2024; TRL's convention).

    M = beta p_t + (1 - beta) p_s;  JSD = beta KL(p_t || M) + (1 - beta) KL(p_s || M).
    beta = 0 is exactly `kl` (KL(p_t || p_s)) and beta = 1 exactly `reverse_kl`, as in TRL (the
    formula itself would give 0 there).
    """
    return dense_divergence(jsd_terms, student_logits, teacher_logits, temperature=temperature, mask=mask,
                            reduction=reduction, beta=beta)


@dataclass(kw_only=True)
class SkewKLConfig(DivergenceConfig):
    name: str = "skew_kl"
    alpha: float = option(0.1, min=0.0, max=1.0, help="mixing weight of the teacher in the skewed student (DistiLLM: 0.1)")


@dataclass(kw_only=True)
class SkewReverseKLConfig(DivergenceConfig):
    name: str = "skew_reverse_kl"
    alpha: float = option(0.1, min=0.0, max=1.0, help="mixing weight of the student in the skewed teacher (DistiLLM: 0.1)")


@register_divergence("skew_kl", config=SkewKLConfig)
def skew_kl_terms(s_logp: Tensor, t_logp: Tensor, *, alpha: float = 0.1) -> Tensor:
    """Skew KL (DistiLLM, ICML 2024): KL(p_t || alpha p_t + (1 - alpha) p_s) per position."""
    m = _mixture_log(t_logp, s_logp, alpha) if alpha > 0 else s_logp
    return kl_terms(t_logp, m)


@register_divergence("skew_reverse_kl", config=SkewReverseKLConfig)
def skew_reverse_kl_terms(s_logp: Tensor, t_logp: Tensor, *, alpha: float = 0.1) -> Tensor:
    """Skew reverse KL (DistiLLM, ICML 2024): KL(p_s || alpha p_s + (1 - alpha) p_t) per position."""
    m = _mixture_log(s_logp, t_logp, alpha) if alpha > 0 else t_logp
    return kl_terms(s_logp, m)


def skew_kl(student_logits: Tensor, teacher_logits: Tensor, *, alpha: float = 0.1, temperature: float = 1.0,
            mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Skew KL (DistiLLM, Ko et al., ICML 2024): KL(p_t || alpha p_t + (1 - alpha) p_s); alpha = 0 is `kl`."""
    return dense_divergence(skew_kl_terms, student_logits, teacher_logits, temperature=temperature, mask=mask,
                            reduction=reduction, alpha=alpha)


def skew_reverse_kl(student_logits: Tensor, teacher_logits: Tensor, *, alpha: float = 0.1, temperature: float = 1.0,
                    mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Skew reverse KL (DistiLLM): KL(p_s || alpha p_s + (1 - alpha) p_t); alpha = 0 is `reverse_kl`."""
    return dense_divergence(skew_reverse_kl_terms, student_logits, teacher_logits, temperature=temperature, mask=mask,
                            reduction=reduction, alpha=alpha)


@dataclass(kw_only=True)
class TVDConfig(DivergenceConfig):
    name: str = "tvd"


@register_divergence("tvd", config=TVDConfig)
def tvd_terms(s_logp: Tensor, t_logp: Tensor) -> Tensor:
    """Total variation distance 0.5 * sum_v |p_t - p_s| per position."""
    return 0.5 * (t_logp.exp() - s_logp.exp()).abs().sum(-1)


def tvd(student_logits: Tensor, teacher_logits: Tensor, *, temperature: float = 1.0, mask: Tensor | None = None,
        reduction: str = "mean") -> Tensor:
    """Total variation distance 0.5 * sum_v |p_t - p_s| (symmetric, bounded by 1)."""
    return dense_divergence(tvd_terms, student_logits, teacher_logits, temperature=temperature, mask=mask,
                            reduction=reduction)


def akl_weights(student_logp: Tensor, teacher_logp: Tensor, mu: float = 0.5) -> tuple[Tensor, Tensor]:
    """(w_head, w_tail) per position: the share of |p_t - p_s| on the teacher's head vs its tail.

    Sort the vocabulary by teacher probability; the head is the prefix whose cumulative teacher
    mass is <= mu, plus always the top-1 token (official code: otherwise a top-1 probability > mu
    would make everything tail); the tail is the rest; g = sum |p_t - p_s| over each part (no gradient).
    """
    with torch.no_grad():
        p_t, p_s = teacher_logp.exp(), student_logp.exp()
        sorted_t, order = p_t.sort(dim=-1, descending=True)
        gap = (sorted_t - p_s.gather(-1, order)).abs()
        tail = sorted_t.cumsum(dim=-1) > mu
        tail[..., 0] = False
        g_head, g_tail = gap.masked_fill(tail, 0).sum(-1), gap.masked_fill(~tail, 0).sum(-1)
        total = (g_head + g_tail).clamp_min(1e-12)
        return g_head / total, g_tail / total


@dataclass(kw_only=True)
class AKLConfig(DivergenceConfig):
    name: str = "akl"
    mu: float = option(0.5, min=0.0, max=1.0, help="teacher head = top tokens with cumulative mass <= mu")


@register_divergence("akl", config=AKLConfig)
def akl_terms(s_logp: Tensor, t_logp: Tensor, *, mu: float = 0.5) -> Tensor:
    """Adaptive KL (COLING 2025): w_head KL(p_t || p_s) + w_tail KL(p_s || p_t) per position (`akl_weights`)."""
    w_head, w_tail = akl_weights(s_logp, t_logp, mu)
    return w_head * kl_terms(t_logp, s_logp) + w_tail * kl_terms(s_logp, t_logp)


def akl(student_logits: Tensor, teacher_logits: Tensor, *, mu: float = 0.5, temperature: float = 1.0,
        mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Adaptive KL (Wu et al., "Rethinking KL Divergence in Knowledge Distillation for LLMs", COLING 2025).

    AKL = w_head KL(p_t || p_s) + w_tail KL(p_s || p_t) per position, with the weights of
    `akl_weights` (head = teacher-sorted prefix of cumulative mass <= mu, top-1 included): forward KL fits the
    head, reverse KL the tail, in proportion to where the student is further off.
    """
    return dense_divergence(akl_terms, student_logits, teacher_logits, temperature=temperature, mask=mask,
                            reduction=reduction, mu=mu)


@dataclass(kw_only=True)
class TAIDDivergenceConfig(DivergenceConfig):
    name: str = "taid"
    t: float = option(1.0, min=0.0, max=1.0, help="interpolation weight of the teacher (the taid method moves it)")


@register_divergence("taid", config=TAIDDivergenceConfig)
def taid_terms(s_logp: Tensor, t_logp: Tensor, *, t: float = 1.0) -> Tensor:
    """TAID target KL (ICLR 2025): KL(softmax((1 - t) sg(log p_s) + t log p_t) || p_s) per position.

    On log-probabilities at temperature T this equals the logit form softmax(((1 - t) sg(z_s) +
    t z_t) / T): log p = z / T - const, and the constant cancels in the softmax.
    """
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must be in [0, 1], got {t}")
    # t = 0 or 1 drops a side entirely: 0 * (-inf) from a masked vocabulary entry would be NaN
    student_part = (1 - t) * s_logp.detach() if t < 1 else torch.zeros_like(s_logp)
    teacher_part = t * t_logp if t > 0 else torch.zeros_like(t_logp)
    target = torch.log_softmax(student_part + teacher_part, dim=-1)
    return kl_terms(target, s_logp)


def taid(student_logits: Tensor, teacher_logits: Tensor, *, t: float, temperature: float = 1.0,
         mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """TAID target KL (Shing et al., "TAID: Temporally Adaptive Interpolated Distillation", ICLR 2025).

    p_t = softmax(((1 - t) stopgrad(z_s) + t z_t) / T);  loss = KL(p_t || softmax(z_s / T)).
    Zero on identical inputs; t = 1 is `kl`. The schedule of t is state of the `taid` method.
    """
    return dense_divergence(taid_terms, student_logits, teacher_logits, temperature=temperature, mask=mask,
                            reduction=reduction, t=t)
