"""Forward KL per position together with its gradient in closed form: the fused loss's hot path.

For KL(p_t || p_s) with p = softmax(logits / T) the gradient with respect to the student logits
is (p_s - p_t) / T, so the fused loss does not need autograd through log-softmaxes and products
for the most common divergence: it saves several passes over each chunk x V tensor (measured in
`benchmarks/store.py`, where it is what lets the student step from a store approach the cost of
the student alone).

Two teachers:
  - `forward_kl_with_grad`: dense teacher logits (live teacher), (n, V);
  - `sparse_forward_kl_with_grad`: stored top-k log-probs + tail with the tail spread uniformly
    over the V - k other ids (`distill.losses.sparse`, mode "uniform"), without building the
    dense (n, V) teacher at all.
Both match `distill.losses.divergences.kl` (and its autograd gradient) on the same inputs:
teacher masses are renormalised like a log-softmax would, 0 log 0 = 0, no T^2 factor.
`cross_entropy_with_grad` does the same for the next-token CE term. Every function keeps float64
inputs in float64 (and computes half / bfloat16 in float32).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.losses.reduction import upcast


def _tempered(logits: Tensor, temperature: float) -> Tensor:
    """logits / T in at least float32; the input itself (not a copy) when T = 1 and no upcast is needed."""
    return upcast(logits) if temperature == 1.0 else upcast(logits) / temperature


def _softmax_with_lse(logits: Tensor, temperature: float) -> tuple[Tensor, Tensor, Tensor]:
    """(z = logits / T, p = softmax(z), lse = logsumexp(z) (n, 1)); z is `logits` itself when T = 1 (not modified).

    torch's fused softmax is the cheapest pass over n x V; lse is read back from p at the row's
    arg-max, where p >= 1 / V, so the log is accurate.
    """
    z = _tempered(logits, temperature)
    top, where = z.max(dim=-1, keepdim=True)
    p = torch.softmax(z, dim=-1)
    return z, p, top - p.gather(-1, where).log()


def forward_kl_with_grad(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """(per (n,), grad (n, V)): per_n = KL(p_t || p_s) at row n, grad = d per_n / d student_logits.

    Args:
        student_logits, teacher_logits: (n, V); teacher entries of -inf (masked vocabulary) carry
            no mass.
        temperature: both distributions are softmax(logits / T); no T^2 factor.
    """
    z, p_s, s_lse = _softmax_with_lse(student_logits, temperature)
    t_logp = F.log_softmax(_tempered(teacher_logits, temperature), dim=-1)
    p_t = t_logp.exp()
    # KL = sum p_t log p_t - sum p_t z + lse(z); -inf log-probs carry p_t = 0: clamp so 0 * log 0 = 0
    t_logp.clamp_(min=torch.finfo(t_logp.dtype).min)
    per = torch.linalg.vecdot(p_t, t_logp) - torch.linalg.vecdot(p_t, z) + s_lse.squeeze(-1)
    grad = p_s.sub_(p_t)
    return per, grad if temperature == 1.0 else grad.div_(temperature)


def sparse_forward_kl_with_grad(student_logits: Tensor, ids: Tensor, logp: Tensor, tail: Tensor,
                                temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """(per (n,), grad (n, V)) of KL(q || p_s) for a stored teacher q, without a dense q.

    q: the top-k log-probs `logp` (n, k) at `ids` (n, k, distinct per row) and the tail mass
    exp(`tail`) (n,) spread evenly over the V - k other ids, renormalised to sum to one. With
    u = log q of one tail id, l = log p_s and S = sum_v l_v:
        per = sum_top q_j (log q_j - l_j) + (V - k) q_u u - q_u (S - sum_top l_j)
        grad = (p_s - q) / T, built as p_s - q_u everywhere, then corrected at the top-k ids.
    The student is softmax(student_logits / T); the teacher's log-probs are used as stored (the
    capture temperature, which the caller checks equals T).
    """
    n, vocab = student_logits.shape
    k = ids.shape[-1]
    ids = ids.long()
    z, p_s, s_lse = _softmax_with_lse(student_logits, temperature)
    top, tail = upcast(logp).to(z.dtype), upcast(tail).to(z.dtype).reshape(n, 1)
    log_norm = torch.logsumexp(torch.cat([top, tail], dim=-1), dim=-1, keepdim=True)
    top = top - log_norm
    q_top = top.exp()
    l_top = z.gather(-1, ids) - s_lse
    per = torch.where(q_top > 0, q_top * (top - l_top), torch.zeros_like(top)).sum(-1)
    if k < vocab:
        u = tail - log_norm - math.log(vocab - k)
        q_u = u.exp()
        # S = sum z - V lse cancels to ~V * eps * |lse| absolute in float32, but it is multiplied by
        # q_u <= 1 / (V - k), so the error in `per` stays ~eps * |lse| (a float64 sum cost 10 % of a step)
        s_all = z.sum(-1, keepdim=True) - vocab * s_lse
        tail_part = (vocab - k) * q_u * u - q_u * (s_all - l_top.sum(-1, keepdim=True))
        per = per + torch.where(q_u > 0, tail_part, torch.zeros_like(tail_part)).squeeze(-1)
        grad = p_s.sub_(q_u)
    else:
        q_u, grad = torch.zeros_like(tail), p_s
    grad.scatter_add_(-1, ids, q_u.expand(n, k) - q_top)
    return per, grad if temperature == 1.0 else grad.div_(temperature)


def cross_entropy_with_grad(student_logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """(per (n,), grad (n, V)): next-token cross-entropy -log softmax(logits)[label] and its gradient
    softmax - onehot, in closed form; rows labelled -100 give exactly 0 and a zero gradient."""
    valid = labels != -100
    safe = labels.clamp_min(0).long()[:, None]
    z, p, lse = _softmax_with_lse(student_logits, 1.0)
    per = (lse - z.gather(-1, safe)).squeeze(-1)
    grad = p.scatter_add_(-1, safe, torch.full_like(safe, -1.0, dtype=p.dtype))
    if not bool(valid.all()):
        per = torch.where(valid, per, torch.zeros_like(per))
        grad.masked_fill_(~valid[:, None], 0.0)
    return per, grad
