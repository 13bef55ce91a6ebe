"""Sparse teacher targets: the teacher's top-k log-probabilities plus the mass of everything else.

A stored teacher distribution at position n is (ids_n (k,), logp_n (k,), tail_n): the k most
likely token ids, their log-probabilities at the capture temperature, and the log of the remaining
mass. Two ways to compare it with a full student distribution (selectable, `tail=`):
  - "uniform": spread the tail mass evenly over the V - k other ids -> a full V-way teacher
    distribution (built one chunk at a time by the fused loss, never N x V);
  - "bucket": keep the tail as one outcome and collapse the student the same way -> two (k + 1)-way
    distributions [top-k ids..., everything else].
With k = V both are the live teacher's distribution (the tail is empty). The chunks that losses
read are in `distill.losses.signal` (`TopKSignal`); this module holds the array functions.
"""
from __future__ import annotations

import math

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

