"""Approximate Likelihood Matching (Minixhofer, Vulić, Ponti, "Universal Cross-Tokenizer Distillation via
Approximate Likelihood Matching", NeurIPS 2025; official code: tokenkit).

For each aligned chunk (span of shared text) compare the likelihood the teacher and the student
give the chunk's actual text, l = sum of the log-probs of the chunk's tokens, as a binary outcome
"the chunk occurs" with probability q = exp(l / tau - eps) (tau = 100: the tau-th root keeps long
chunks' probabilities away from 0):
  binary_ce(q_t, q_s) = -(q_t log q_s + (1 - q_t) log(1 - q_s))     (tokenkit's default)
  binary_kl           = binary_ce - H(q_t): the same gradient, 0 when the student matches
  reverse_binary_kl   = q_s (log q_s - log q_t) + (1 - q_s) (log(1 - q_s) - log(1 - q_t))
log(1 - e^x) is computed stably. Chunk log-likelihoods are clipped at 0 as in tokenkit. Shapes:
(S,) chunk log-likelihoods in, (S,) per-chunk values out; reduce by the mean over valid chunks.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

DIFFERENCES = ("binary_ce", "binary_kl", "reverse_binary_kl")


def log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x < 0, stable at both ends."""
    return torch.where(x < -math.log(2.0), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def alm(student_logp: Tensor, teacher_logp: Tensor, *, temperature: float = 100.0, eps: float = 1e-6,
        difference: str = "binary_ce") -> Tensor:
    """(S,) binarised divergence between the teacher's and the student's chunk likelihoods (module docstring)."""
    if difference not in DIFFERENCES:
        raise ValueError(f"difference={difference!r}: expected one of {DIFFERENCES}")
    lt = teacher_logp.clamp(max=0.0) / temperature - eps
    ls = student_logp.clamp(max=0.0) / temperature - eps
    q_t, q_s = lt.exp(), ls.exp()
    if difference == "reverse_binary_kl":
        return q_s * (ls - lt) + (-torch.expm1(ls)) * (log1mexp(ls) - log1mexp(lt))
    value = -(q_t * ls + (-torch.expm1(lt)) * log1mexp(ls))
    if difference == "binary_kl":
        value = value + (q_t * lt + (-torch.expm1(lt)) * log1mexp(lt))
    return value
