"""Divergences between the student's and the teacher's categorical distributions.

Conventions shared by every function here (and by every token and class loss built on them):
  - inputs are logits of identical shape (..., C): (B, C) for classes or (B, T, V) for tokens;
  - distributions are softmax(logits / temperature) over the last axis, computed in at least
    float32 (half / bfloat16 inputs are upcast, float64 stays float64); plain divergences do *not* multiply by T^2 (methods that follow a
    paper doing so, like `hinton_kd`, say it in their docstring);
  - the divergence is summed over the class axis, giving one value per position, then reduced by
    `distill.losses.reduction.reduce_positions` ("mean" over positions where `mask` is true,
    exactly 0 when every position is masked; "sum"; or "none").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from distill.losses.logprobs import dense_divergence, kl_terms, log_probs_pair
from distill.losses.registry import DivergenceConfig, register_divergence

__all__ = ["dense_divergence", "kl", "kl_terms", "log_probs_pair", "reverse_kl"]


def kl(student_logits: Tensor, teacher_logits: Tensor, *, temperature: float = 1.0,
       mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Forward KL, KL(p_teacher || p_student), the classic distillation divergence.

    Args:
        student_logits: (..., C) logits of the student.
        teacher_logits: (..., C) logits of the teacher (no gradient is needed through them).
        temperature: both distributions are softmax(logits / temperature). No T^2 factor.
        mask: optional bool (...) tensor; only positions where it is true count.
        reduction: "mean" over valid positions (0 if none), "sum", or "none" (per position).

    Returns:
        A scalar, or a (...) tensor for reduction="none". Mean-seeking: the student is pushed to
        cover every mode of the teacher.
    """
    return dense_divergence(forward_kl_terms, student_logits, teacher_logits, temperature=temperature, mask=mask,
                            reduction=reduction)


def reverse_kl(student_logits: Tensor, teacher_logits: Tensor, *, temperature: float = 1.0,
               mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Reverse KL, KL(p_student || p_teacher); same shapes and conventions as `kl`.

    Mode-seeking: the student concentrates on the teacher's main modes (MiniLLM, GKD use it).
    """
    return dense_divergence(reverse_kl_terms, student_logits, teacher_logits, temperature=temperature, mask=mask,
                            reduction=reduction)


@dataclass(kw_only=True)
class KLConfig(DivergenceConfig):
    name: str = "kl"


@dataclass(kw_only=True)
class ReverseKLConfig(DivergenceConfig):
    name: str = "reverse_kl"


def _forward_kl_closed_form(student_logits: Tensor, chunk: Any, temperature: float) -> tuple[Tensor, Tensor]:
    # the chunk knows its own closed form (dense or top-k + uniform tail) or falls back to autograd
    return chunk.forward_kl_with_grad(student_logits, temperature)


@register_divergence("kl", config=KLConfig, closed_form=_forward_kl_closed_form)
def forward_kl_terms(s_logp: Tensor, t_logp: Tensor) -> Tensor:
    """Forward KL(p_t || p_s) per position (the classic distillation divergence)."""
    return kl_terms(t_logp, s_logp)


@register_divergence("reverse_kl", config=ReverseKLConfig)
def reverse_kl_terms(s_logp: Tensor, t_logp: Tensor) -> Tensor:
    """Reverse KL(p_s || p_t) per position (mode-seeking; MiniLLM, GKD)."""
    return kl_terms(s_logp, t_logp)
