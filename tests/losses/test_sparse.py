"""Sparse (top-k + tail) teacher targets: k = V equals the live teacher; k < V matches slow references."""
import math

import pytest
import torch

from distill.losses.fused import fused_linear_divergence
from distill.losses import DIVERGENCES, HiddenSignal, TopKSignal
from distill.losses.signal import BucketChunk
from distill.losses.sparse import sparse_to_dense, topk_with_tail

N, H, V = 23, 12, 40


def setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    hs = torch.randn(N, H, generator=g, requires_grad=True)
    ws = (torch.randn(V, H, generator=g) * 0.4).requires_grad_(True)
    ht, wt = torch.randn(N, H, generator=g), torch.randn(V, H, generator=g) * 0.4
    return hs, ws, ht, wt


def test_topk_with_tail_keeps_all_the_mass():
    logits = torch.randn(5, V) * 3
    ids, logp, tail = topk_with_tail(logits, 7, temperature=2.0)
    total = logp.exp().sum(-1) + tail.exp()
    torch.testing.assert_close(total, torch.ones(5))
    assert (logp[:, :-1] >= logp[:, 1:]).all()  # sorted
    _, _, empty = topk_with_tail(logits, V)
    assert torch.isinf(empty).all() and (empty < 0).all()


@pytest.mark.parametrize("mode", ["uniform", "bucket"])
@pytest.mark.parametrize("name", ["kl", "reverse_kl", "jsd", "taid"])
def test_k_equal_to_vocab_is_the_live_teacher(name, mode):
    hs, ws, ht, wt = setup()
    kw = {"t": 0.5} if name == "taid" else {}
    T = 2.0
    live = fused_linear_divergence(hs, ws, HiddenSignal(ht, wt), divergence=name, temperature=T, chunk_size=6, **kw)
    ids, logp, tail = topk_with_tail(ht @ wt.t(), V, temperature=T)
    stored = TopKSignal(ids, logp, tail, temperature=T, tail=mode)
    sparse = fused_linear_divergence(hs, ws, stored, divergence=name, temperature=T, chunk_size=6, **kw)
    torch.testing.assert_close(sparse.loss, live.loss, rtol=1e-6, atol=1e-6)
    for a, b in zip(torch.autograd.grad(sparse.loss, (hs, ws)), torch.autograd.grad(live.loss, (hs, ws))):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_uniform_tail_matches_a_slow_reference():
    hs, ws, ht, wt = setup(1)
    k = 5
    ids, logp, tail = (x.detach() for x in topk_with_tail(ht @ wt.t(), k))
    s = (hs @ ws.t()).detach()
    expected = 0.0
    for n in range(N):
        p = [math.exp(float(tail[n])) / (V - k)] * V
        for j in range(k):
            p[int(ids[n, j])] = math.exp(float(logp[n, j]))
        q = torch.softmax(s[n].double(), 0).tolist()
        expected += sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)
    out = fused_linear_divergence(hs, ws, TopKSignal(ids, logp, tail, 1.0), chunk_size=4)
    assert float(out.loss.detach()) == pytest.approx(expected / N, rel=1e-5)
    dense = sparse_to_dense(ids, logp, tail, V)
    torch.testing.assert_close(dense.exp().sum(-1), torch.ones(N))


def test_bucket_tail_matches_a_slow_reference():
    hs, ws, ht, wt = setup(2)
    k = 6
    ids, logp, tail = (x.detach() for x in topk_with_tail(ht @ wt.t(), k))
    s = (hs @ ws.t()).detach()
    expected = 0.0
    for n in range(N):
        q = torch.softmax(s[n].double(), 0)
        top = [float(q[int(i)]) for i in ids[n]]
        qb = top + [1 - sum(top)]
        pb = [math.exp(float(x)) for x in logp[n]] + [math.exp(float(tail[n]))]
        expected += sum(a * math.log(a / b) for a, b in zip(pb, qb))
    out = fused_linear_divergence(hs, ws, TopKSignal(ids, logp, tail, 1.0, tail="bucket"), chunk_size=5)
    assert float(out.loss.detach()) == pytest.approx(expected / N, rel=1e-5)
    s_b, t_b = BucketChunk(ids, logp, tail, V).distributions(s, 1.0)
    torch.testing.assert_close(s_b.exp().sum(-1), torch.ones(N))


def test_fp16_storage_is_close_to_the_live_teacher():
    hs, ws, ht, wt = setup(3)
    live = fused_linear_divergence(hs, ws, HiddenSignal(ht, wt))
    ids, logp, tail = topk_with_tail(ht @ wt.t(), V)
    stored = TopKSignal(ids.int(), logp.half(), tail.half(), 1.0)
    assert float(fused_linear_divergence(hs, ws, stored).loss.detach()) == pytest.approx(float(live.loss.detach()), rel=1e-2)


def test_loss_temperature_must_match_the_capture_temperature():
    hs, ws, ht, wt = setup(4)
    ids, logp, tail = topk_with_tail(ht @ wt.t(), 8, temperature=1.0)
    with pytest.raises(ValueError, match="captured at temperature 1.0"):
        fused_linear_divergence(hs, ws, TopKSignal(ids, logp, tail, 1.0), temperature=2.0)


@pytest.mark.parametrize("name", DIVERGENCES.names())
def test_every_divergence_accepts_sparse_targets(name):
    hs, ws, ht, wt = setup(5)
    kw = {"t": 0.5} if name == "taid" else {}
    ids, logp, tail = topk_with_tail(ht @ wt.t(), 8)
    for mode in ("uniform", "bucket"):
        out = fused_linear_divergence(hs, ws, TopKSignal(ids, logp, tail, 1.0, tail=mode), divergence=name, **kw)
        assert torch.isfinite(out.loss) and out.loss >= -1e-6
        assert torch.isfinite(torch.autograd.grad(out.loss, ws)[0]).all()
