"""Sparse teacher targets: the teacher's top-k log-probabilities plus the mass of everything else.

A stored teacher distribution at position n is (ids_n (k,), logp_n (k,), tail_n): the k most
likely token ids, their log-probabilities at the capture temperature, and the log of the remaining
mass. Two ways to compare it with a full student distribution (selectable, `tail=`):
  - "uniform": spread the tail mass evenly over the V - k other ids -> a full V-way teacher
    distribution (built one chunk at a time by the fused loss, never N x V);
  - "bucket": keep the tail as one outcome and collapse the student the same way -> two (k + 1)-way
    distributions [top-k ids..., everything else].
With k = V both are the live teacher's distribution (the tail is empty).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.losses.reduction import upcast


def topk_with_tail(logits: Tensor, k: int, temperature: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """(ids (n, k) int64, logp (n, k), tail (n,)) of softmax(logits / T); tail = log of the mass outside the top k.

    The tail is a logsumexp over the excluded log-probs (exact and stable, unlike log(1 - sum p));
    -inf when k equals the vocabulary size.
    """
    logp = F.log_softmax(upcast(logits) / temperature, dim=-1)
    top_logp, ids = logp.topk(k, dim=-1)
    rest = logp.scatter(-1, ids, float("-inf"))
    return ids, top_logp, torch.logsumexp(rest, dim=-1)


def sparse_to_dense(ids: Tensor, logp: Tensor, tail: Tensor, vocab_size: int) -> Tensor:
    """(n, V) log-probs: the stored top-k at their ids, the tail mass spread uniformly over the other ids."""
    n, k = ids.shape
    if k >= vocab_size:
        fill = torch.full((n, 1), float("-inf"), dtype=upcast(logp).dtype, device=ids.device)
    else:
        fill = upcast(tail).reshape(n, 1) - math.log(vocab_size - k)
    dense = fill.expand(n, vocab_size).clone()
    return dense.scatter(-1, ids.long(), upcast(logp))


@dataclass
class BucketTarget:
    """A teacher chunk in bucket form; `pair` collapses the student's logits to the same k + 1 outcomes."""

    ids: Tensor
    logp: Tensor
    tail: Tensor

    def pair(self, student_logits: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
        """(student (n, k+1), teacher (n, k+1)) log-probs over [top-k ids..., everything else]."""
        s_logp = F.log_softmax(upcast(student_logits) / temperature, dim=-1)
        s_top = s_logp.gather(-1, self.ids.long())
        if self.ids.shape[-1] >= s_logp.shape[-1]:  # empty tail: a constant (logsumexp of nothing has a NaN gradient)
            s_rest = torch.full_like(s_top[:, :1], float("-inf"))
        else:
            s_rest = torch.logsumexp(s_logp.scatter(-1, self.ids.long(), float("-inf")), dim=-1, keepdim=True)
        t = torch.cat([upcast(self.logp), upcast(self.tail).reshape(-1, 1)], dim=-1)
        return torch.cat([s_top, s_rest], dim=-1), t


@dataclass
class UniformTailTarget:
    """A teacher chunk in uniform-tail form. Forward KL reads it directly (`sparse_forward_kl_with_grad`);
    every other divergence takes `dense_logits`."""

    ids: Tensor
    logp: Tensor
    tail: Tensor
    vocab_size: int

    def dense_logits(self, temperature: float) -> Tensor:
        """(n, V) teacher log-probs times T: a divergence at temperature T divides by T again, so the
        teacher stays at its capture temperature."""
        return sparse_to_dense(self.ids, self.logp, self.tail, self.vocab_size) * temperature


@dataclass
class SparseTargets:
    """Sparse teacher outputs for N positions, captured at `temperature`; `chunk` feeds the fused loss.

    Losses must run at the capture temperature (the tail cannot be re-tempered exactly).
    """

    ids: Tensor
    logp: Tensor
    tail: Tensor
    temperature: float
    mode: str = "uniform"

    def chunk(self, start: int, end: int, vocab_size: int, loss_temperature: float) -> UniformTailTarget | BucketTarget:
        if abs(loss_temperature - self.temperature) > 1e-9:
            raise ValueError(f"the stored teacher was captured at temperature {self.temperature}; the loss asks for "
                             f"{loss_temperature} (set the method's temperature to {self.temperature} or recapture)")
        ids, logp, tail = self.ids[start:end], self.logp[start:end], self.tail[start:end]
        if self.mode == "bucket":
            return BucketTarget(ids, logp, tail)
        return UniformTailTarget(ids, logp, tail, vocab_size)
