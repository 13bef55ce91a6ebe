"""Closed-form forward KL and its gradient (the fused loss's fast path) against slow references and autograd."""
import math

import pytest
import torch

from distill.losses import kl
from distill.losses.kl_grad import forward_kl_with_grad, sparse_forward_kl_with_grad
from distill.losses.sparse import sparse_to_dense, topk_with_tail
from tests.losses.reference import kl as ref_kl
from tests.losses.reference import rows, softmax

N, V = 6, 11


def logits(seed, scale=3.0):
    return torch.randn(N, V, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def autograd_kl(student, teacher, temperature):
    s = student.clone().requires_grad_(True)
    per = kl(s, teacher, temperature=temperature, reduction="none")
    (grad,) = torch.autograd.grad(per.sum(), s)  # rows are independent: row n of grad is d per_n / d s_n
    return per.detach(), grad


def sparse_reference(student_row, ids, logp, tail, T):
    """Loop over the vocabulary: the uniform-tail teacher written out, renormalised, then KL."""
    top = dict(zip(ids, logp))
    rest = (math.exp(tail) / (V - len(ids))) if len(ids) < V else 0.0
    q = [math.exp(top[v]) if v in top else rest for v in range(V)]
    q = [x / sum(q) for x in q]
    return ref_kl(q, softmax(student_row, T))


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_dense_matches_the_loop_reference_and_autograd(temperature):
    s, t = logits(0), logits(1)
    t[0, :4] = float("-inf")  # a masked vocabulary slice carries no teacher mass
    per, grad = forward_kl_with_grad(s, t, temperature)
    expected = [ref_kl(softmax(tr, temperature), softmax(sr, temperature)) for sr, tr in zip(rows(s), rows(t))]
    torch.testing.assert_close(per, torch.tensor(expected, dtype=per.dtype), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, autograd_kl(s, t, temperature)[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k", [1, 4, V])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sparse_matches_the_loop_reference_and_dense_autograd(k, temperature):
    s, t = logits(2), logits(3)
    ids, logp, tail = topk_with_tail(t, k, temperature)
    logp = logp + 0.01  # stored values need not sum to one exactly (float16): both sides renormalise
    per, grad = sparse_forward_kl_with_grad(s, ids, logp, tail, temperature)
    expected = [sparse_reference(sr, i, lp, float(tl), temperature)
                for sr, i, lp, tl in zip(rows(s), ids.tolist(), rows(logp), tail)]
    torch.testing.assert_close(per, torch.tensor(expected, dtype=per.dtype), rtol=1e-9, atol=1e-12)
    dense_teacher = sparse_to_dense(ids, logp, tail, V).double() * temperature  # the divergence divides by T again
    torch.testing.assert_close(grad, autograd_kl(s, dense_teacher, temperature)[1], rtol=1e-9, atol=1e-12)


def test_sparse_with_an_empty_tail_below_full_k_has_no_nan():
    s, t = logits(4), logits(5)
    ids, logp, _ = topk_with_tail(t, 3)
    tail = torch.full((N,), float("-inf"), dtype=torch.float64)  # all mass in the top 3
    per, grad = sparse_forward_kl_with_grad(s, ids, logp, tail)
    assert torch.isfinite(per).all() and torch.isfinite(grad).all()
    dense_teacher = sparse_to_dense(ids, logp, tail, V).double()
    torch.testing.assert_close(per, kl(s, dense_teacher, reduction="none"), rtol=1e-10, atol=1e-12)


def test_zero_on_identical_distributions():
    s = logits(6)
    per, grad = forward_kl_with_grad(s, s.clone(), 1.5)
    assert per.abs().max() < 1e-12 and grad.abs().max() < 1e-12
    ids, logp, tail = topk_with_tail(s, V)
    per, grad = sparse_forward_kl_with_grad(s, ids, logp, tail)
    assert per.abs().max() < 1e-12 and grad.abs().max() < 1e-12


def test_float32_sum_over_a_large_vocabulary_stays_accurate():
    g = torch.Generator().manual_seed(7)
    s, t = torch.randn(4, 50_000, generator=g) * 4 + 10, torch.randn(4, 50_000, generator=g) * 4
    ids, logp, tail = topk_with_tail(t, 8)
    per, _ = sparse_forward_kl_with_grad(s, ids, logp, tail)
    per64, _ = sparse_forward_kl_with_grad(s.double(), ids, logp.double(), tail.double())
    torch.testing.assert_close(per.double(), per64, rtol=1e-5, atol=1e-5)
