"""Sentence-embedding and ranking losses against slow loop references, plus their properties: zero on
identical inputs where defined, non-negative, masking, and float64 gradient checks on tiny inputs."""
import math

import pytest
import torch
from torch.autograd import gradcheck

from distill import losses as L
from distill.losses import lelp
from tests.losses import reference as R

B, D = 5, 4


def emb(seed, rows=B, dim=D, dtype=torch.float64):
    return torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def close(a, b, tol=1e-7):
    assert float(a) == pytest.approx(float(b), rel=tol, abs=tol)


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def grad_ok(fn, *inputs):
    inputs = [x.clone().requires_grad_(True) for x in inputs]
    assert gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


# ---------------------------------------------------------------- LEAF alignment

def test_embedding_mse_and_cosine_reference_and_properties():
    s, t = emb(0), emb(1)
    mse = R.mean([sum((a - b) ** 2 for a, b in zip(x, y)) for x, y in zip(R.rows(s), R.rows(t))])
    close(L.embedding_mse(s, t), mse)
    close(L.embedding_cosine(s, t), R.mean([1 - cos(x, y) for x, y in zip(R.rows(s), R.rows(t))]))
    assert L.embedding_mse(s, s).item() == 0.0 and L.embedding_cosine(s, 3 * s).item() == pytest.approx(0, abs=1e-12)
    assert L.embedding_mse(s, t) >= 0 and 0 <= L.embedding_cosine(s, t) <= 2
    mask = torch.tensor([True, False, True, False, False])
    close(L.embedding_mse(s, t, mask=mask), L.embedding_mse(s[mask], t[mask]))
    assert L.embedding_mse(s, t, mask=torch.zeros(B, dtype=torch.bool)).item() == 0.0
    grad_ok(L.embedding_mse, s, t)
    grad_ok(L.embedding_cosine, s, t)
    with pytest.raises(ValueError, match="B, D"):
        L.embedding_mse(s, t[:, :2])


# ---------------------------------------------------------------- listwise KL and the in-batch forms

def slow_listwise_kl(s, t, mask, T):
    values = []
    for srow, trow, mrow in zip(R.rows(s), R.rows(t), mask.tolist()):
        keep = [i for i, m in enumerate(mrow) if m]
        if keep:
            values.append(R.kl(R.softmax([trow[i] for i in keep], T), R.softmax([srow[i] for i in keep], T)))
    return R.mean(values) if values else 0.0


def test_listwise_kl_reference_masking_and_gradient():
    s, t = emb(2, 4, 6) * 2, emb(3, 4, 6) * 2
    mask = torch.tensor([[1, 1, 1, 0, 0, 1], [1, 0, 1, 1, 1, 1], [0] * 6, [1] * 6], dtype=torch.bool)
    close(L.listwise_kl(s, t, temperature=1.5, mask=mask), slow_listwise_kl(s, t, mask, 1.5))
    assert L.listwise_kl(s, s + 3.0).item() == pytest.approx(0.0, abs=1e-12)  # per-row shift: same distribution
    assert L.listwise_kl(s, t, mask=torch.zeros_like(mask)).item() == 0.0
    x = s.clone().requires_grad_(True)
    L.listwise_kl(x, t, mask=mask).backward()
    assert torch.isfinite(x.grad).all() and (x.grad[~mask] == 0).all()
    grad_ok(lambda a: L.listwise_kl(a, t, temperature=0.7, mask=mask), s)


def test_similarity_kd_reference_and_properties():
    s, t = emb(4, B, 3), emb(5, B, 7)  # widths may differ
    T = 0.5
    ss = [[cos(a, b) for b in R.rows(s)] for a in R.rows(s)]
    tt = [[cos(a, b) for b in R.rows(t)] for a in R.rows(t)]
    expected = R.mean([R.kl(R.softmax([tt[i][j] for j in range(B) if j != i], T),
                            R.softmax([ss[i][j] for j in range(B) if j != i], T)) for i in range(B)])
    close(L.similarity_kd(s, t, temperature=T), expected)
    assert L.similarity_kd(s, 2 * s).item() == pytest.approx(0.0, abs=1e-12)
    mask = torch.tensor([True, True, False, True, True])
    close(L.similarity_kd(s, t, temperature=T, mask=mask), L.similarity_kd(s[mask], t[mask], temperature=T))
    assert L.similarity_kd(s[:1], t[:1]).item() == 0.0  # one text has no neighbour
    grad_ok(lambda a: L.similarity_kd(a, t, temperature=T), s)


def test_in_batch_contrastive_kd_reference():
    q, p, tq, tp = emb(6), emb(7), emb(8, dim=6), emb(9, dim=6)
    tau = 0.5
    S = [[cos(a, b) / tau for b in R.rows(p)] for a in R.rows(q)]
    Tm = [[cos(a, b) / tau for b in R.rows(tp)] for a in R.rows(tq)]
    scores = L.in_batch_scores(q, p, temperature=tau)
    teacher = L.in_batch_scores(tq, tp, temperature=tau)
    close(L.in_batch_ce(scores), R.mean([R.logsumexp(row) - row[i] for i, row in enumerate(S)]))
    close(L.in_batch_kd(scores, teacher), R.mean([R.kl(R.softmax(a), R.softmax(b)) for a, b in zip(Tm, S)]))
    assert L.in_batch_kd(scores, scores).item() == pytest.approx(0.0, abs=1e-12)
    close(L.in_batch_scores(q, p, similarity="dot")[1, 2], dot(R.rows(q)[1], R.rows(p)[2]))
    grad_ok(lambda a, b: L.in_batch_kd(L.in_batch_scores(a, b, temperature=tau), teacher), q, p)


# ---------------------------------------------------------------- Margin-MSE

def test_margin_mse_reference_and_properties():
    sp, sn, tp, tn = (torch.randn(B, generator=torch.Generator().manual_seed(i), dtype=torch.float64) for i in range(4))
    expected = R.mean([((a - b) - (c - d)) ** 2 for a, b, c, d in zip(*(x.tolist() for x in (sp, sn, tp, tn)))])
    close(L.margin_mse(sp, sn, tp, tn), expected)
    assert L.margin_mse(sp, sn, sp + 5, sn + 5).item() == pytest.approx(0.0, abs=1e-12)  # only margins count
    mask = torch.tensor([True, False, True, True, False])
    close(L.margin_mse(sp, sn, tp, tn, mask=mask), L.margin_mse(sp[mask], sn[mask], tp[mask], tn[mask]))
    grad_ok(lambda a, b: L.margin_mse(a, b, tp, tn), sp, sn)


# ---------------------------------------------------------------- RankNet and DeAR

def slow_ranknet(s, t, mask, soft):
    rows = []
    for srow, trow, mrow in zip(R.rows(s), R.rows(t), mask.tolist()):
        terms = []
        for i in range(len(srow)):
            for j in range(i + 1, len(srow)):
                if mrow[i] and mrow[j]:
                    d = trow[i] - trow[j]
                    target = 1 / (1 + math.exp(-d)) if soft else (1 + (d > 0) - (d < 0)) / 2
                    p = 1 / (1 + math.exp(-(srow[i] - srow[j])))
                    terms.append(-target * math.log(p) - (1 - target) * math.log(1 - p))
        if terms:
            rows.append(R.mean(terms))
    return R.mean(rows)


@pytest.mark.parametrize("soft", [True, False])
def test_ranknet_reference_and_masking(soft):
    s, t = emb(10, 3, 5), emb(11, 3, 5)
    t[0, 1] = t[0, 2]  # a tie: hard target 1/2
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 0, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)  # row 2: no pair
    close(L.ranknet(s, t, soft=soft, mask=mask), slow_ranknet(s, t, mask, soft))
    assert L.ranknet(s, t, soft=soft) >= 0
    grad_ok(lambda a: L.ranknet(a, t, soft=soft, mask=mask), s)


def test_ranknet_soft_targets_are_minimised_at_the_teacher_scores():
    t = emb(12, 2, 4)
    s = t.clone().requires_grad_(True)
    L.ranknet(s, t).backward()
    assert s.grad.abs().max() < 1e-12


def test_dear_loss_reference():
    s, t = emb(13, 3, 4) * 2, emb(14, 3, 4) * 2
    alpha, beta, T = 0.3, 0.6, 2.0
    out = L.dear_loss(s, t, alpha=alpha, beta=beta, temperature=T)
    labels = torch.zeros_like(s)
    labels[:, 0] = 1
    ce = R.mean([R.logsumexp(row) - row[0] for row in R.rows(s)])
    rank = slow_ranknet(s, labels, torch.ones_like(s, dtype=torch.bool), True)
    kl = T * T * R.mean([R.kl(R.softmax(b, T), R.softmax(a, T)) for a, b in zip(R.rows(s), R.rows(t))])
    close(out.ce, ce), close(out.ranknet, rank), close(out.kl, kl)
    close(out.total, (1 - alpha) * (beta * rank + (1 - beta) * ce) + alpha * kl)
    grad_ok(lambda a: L.dear_loss(a, t, alpha=alpha, beta=beta, temperature=T).total, s)


# ---------------------------------------------------------------- LELP

def labelled(seed=0, n=60, dim=6, classes=3):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    centres = torch.randn(classes, dim, generator=g) * 3
    return centres[y] + torch.randn(n, dim, generator=g), y


def test_logistic_head_is_at_its_optimum():
    x, y = labelled()
    w, b = lelp.fit_logistic_head(x, y, 3, l2=1e-2)
    w, b = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(x.double() @ w.T + b, y) + 1e-2 * w.pow(2).sum()
    loss.backward()
    assert w.grad.abs().max() < 1e-5 and b.grad.abs().max() < 1e-5


def test_subclass_projection_keeps_the_class_marginal_and_splits_along_the_null_space():
    x, y = labelled()
    p = lelp.fit_subclass_projection(x, y, 3, subclasses=2, seed=1)
    P, W = p.projector.double(), p.weight.double()
    torch.testing.assert_close(P @ P, P, atol=1e-5, rtol=0)
    torch.testing.assert_close(W @ P, torch.zeros_like(W), atol=1e-5, rtol=0)
    for c in range(3):  # rotated orthonormal directions inside the null space
        v = p.directions[c].double()
        torch.testing.assert_close(v @ v.T, torch.eye(2, dtype=torch.float64), atol=1e-5, rtol=0)
    z = lelp.pseudo_subclass_logits(x, p)
    assert z.shape == (60, 6)
    head = x @ p.weight.T + p.bias
    torch.testing.assert_close(lelp.class_logits(z, 3).softmax(-1), head.softmax(-1), atol=1e-5, rtol=0)
    shift = p.directions[0, 0] * 2.0  # along a null-space direction: class logits fixed, subclass split moves
    z2 = lelp.pseudo_subclass_logits(x + shift, p)
    torch.testing.assert_close(lelp.class_logits(z2, 3), lelp.class_logits(z, 3), atol=1e-4, rtol=0)
    assert not torch.allclose(z2, z, atol=1e-3)


def test_class_logits_and_lelp_loss():
    z = emb(15, 2, 6)
    expected = [[R.logsumexp(row[2 * c:2 * c + 2]) for c in range(3)] for row in R.rows(z)]
    torch.testing.assert_close(lelp.class_logits(z, 3), torch.tensor(expected, dtype=torch.float64))
    assert lelp.lelp_loss(z, z, temperature=2.0).item() == pytest.approx(0.0, abs=1e-12)
    t = emb(16, 2, 6)
    close(lelp.lelp_loss(z, t, temperature=2.0),
          4 * R.mean([R.kl(R.softmax(b, 2), R.softmax(a, 2)) for a, b in zip(R.rows(z), R.rows(t))]))
    grad_ok(lambda a: lelp.lelp_loss(a, t, temperature=2.0), z)
