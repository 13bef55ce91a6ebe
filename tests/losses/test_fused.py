"""The chunked fused loss equals the dense computation, forward and backward, for every divergence."""
import pytest
import torch
import torch.nn.functional as F

from distill.losses.fused import chunk_bounds, default_chunk_size, fused_linear_divergence
from distill.losses import DIVERGENCES, DenseSignal, HiddenSignal


def DIV(name):
    return DIVERGENCES.get(name).obj

N, H, HT, V = 37, 16, 24, 53  # 37 tokens: no chunk size below divides it


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    hs = torch.randn(N, H, generator=g, requires_grad=True)
    ws = (torch.randn(V, H, generator=g) * 0.3).requires_grad_(True)
    ht, wt = torch.randn(N, HT, generator=g), torch.randn(V, HT, generator=g) * 0.3
    labels = torch.randint(0, V, (N,), generator=g)
    return hs, ws, ht, wt, labels


def kwargs_for(name):
    return {"t": 0.6} if name == "taid" else {"beta": 0.3} if name == "jsd" else {}


def dense(hs, ws, ht, wt, name, mask, labels=None, kd=1.0, ce_w=1.0, temperature=2.0):
    s, t = hs @ ws.t(), ht @ wt.t()
    div = DIV(name)(s, t, temperature=temperature, mask=mask, **kwargs_for(name))
    loss = kd * div
    if labels is not None:
        n = mask.sum().clamp_min(1)
        loss = loss + ce_w * F.cross_entropy(s, labels.masked_fill(~mask, -100), ignore_index=-100, reduction="sum") / n
    return loss


@pytest.mark.parametrize("name", DIVERGENCES.names())
@pytest.mark.parametrize("chunk", [1, 8, 64])
def test_fused_equals_dense(name, chunk):
    hs, ws, ht, wt, _ = inputs()
    mask = torch.rand(N, generator=torch.Generator().manual_seed(1)) > 0.3
    mask[8:16] = False  # one whole chunk of size 8 is masked
    expected = dense(hs, ws, ht, wt, name, mask)
    g_hs, g_ws = torch.autograd.grad(expected, (hs, ws))
    out = fused_linear_divergence(hs, ws, HiddenSignal(ht, wt), divergence=name, temperature=2.0, mask=mask, chunk_size=chunk,
                                  **kwargs_for(name))
    f_hs, f_ws = torch.autograd.grad(out.loss, (hs, ws))
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(f_hs, g_hs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(f_ws, g_ws, rtol=1e-5, atol=1e-6)
    assert out.count == mask.sum()


def test_fused_with_cross_entropy_and_weights():
    hs, ws, ht, wt, labels = inputs(2)
    mask = torch.ones(N, dtype=torch.bool)
    mask[-5:] = False
    expected = dense(hs, ws, ht, wt, "kl", mask, labels, kd=0.7, ce_w=0.3)
    out = fused_linear_divergence(hs, ws, HiddenSignal(ht, wt), temperature=2.0, mask=mask, ce_labels=labels, chunk_size=10,
                                  kd_weight=0.7, ce_weight=0.3)
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.autograd.grad(out.loss, ws)[0], torch.autograd.grad(expected, ws)[0], rtol=1e-5, atol=1e-6)
    assert not out.divergence.requires_grad and out.ce is not None


def test_all_masked_gives_exact_zero_and_zero_grads():
    hs, ws, ht, wt, labels = inputs(3)
    out = fused_linear_divergence(hs, ws, HiddenSignal(ht, wt), mask=torch.zeros(N, dtype=torch.bool), ce_labels=labels, chunk_size=7)
    g_hs, g_ws = torch.autograd.grad(out.loss, (hs, ws))
    assert out.loss.item() == 0.0 and not g_hs.any() and not g_ws.any()


def test_sum_reduction_and_external_normalizer():
    hs, ws, ht, wt, _ = inputs(4)
    total = fused_linear_divergence(hs, ws, HiddenSignal(ht, wt), reduction="sum", chunk_size=9).loss
    mean = fused_linear_divergence(hs, ws, HiddenSignal(ht, wt), chunk_size=9).loss
    torch.testing.assert_close(total / N, mean)
    global_norm = fused_linear_divergence(hs, ws, HiddenSignal(ht, wt), normalizer=2 * N, chunk_size=9).loss
    torch.testing.assert_close(global_norm, mean / 2)


def test_padded_vocabulary_slice_equals_dense_on_the_slice():
    hs, ws, ht, wt, _ = inputs(5)
    keep = 40
    expected = DIV("kl")(hs @ ws[:keep].t(), ht @ wt[:keep].t())
    out = fused_linear_divergence(hs, ws, HiddenSignal(ht, wt), vocab_size=keep, chunk_size=6)
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    (g,) = torch.autograd.grad(out.loss, ws)
    assert not g[keep:].any()  # rows beyond the tokenizer never receive gradient


def test_bfloat16_inputs_are_close_to_float32():
    hs, ws, ht, wt, _ = inputs(6)
    ref = fused_linear_divergence(hs, ws, HiddenSignal(ht, wt), chunk_size=8).loss
    low = fused_linear_divergence(hs.bfloat16(), ws.bfloat16(), HiddenSignal(ht.bfloat16(), wt.bfloat16()), chunk_size=8)
    assert low.loss.dtype == torch.float32
    torch.testing.assert_close(low.loss, ref, rtol=5e-2, atol=5e-2)


def test_default_chunk_size_shrinks_with_the_vocabulary():
    assert default_chunk_size(262_144) < default_chunk_size(128_000) < default_chunk_size(32_000)
    assert default_chunk_size(128_000) * 128_000 * 4 * 8 <= 256 * 2 ** 20
    assert chunk_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]


def test_ce_only_needs_no_teacher():
    hs, ws, _, _, labels = inputs(7)
    out = fused_linear_divergence(hs, ws, kd_weight=0.0, ce_labels=labels, chunk_size=5)
    expected = F.cross_entropy(hs @ ws.t(), labels)
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.autograd.grad(out.loss, hs)[0], torch.autograd.grad(expected, hs)[0], rtol=1e-5, atol=1e-6)


def test_per_token_weights_equal_the_weighted_dense_sum():
    hs, ws, ht, wt, labels = inputs(8)
    w = torch.rand(N, generator=torch.Generator().manual_seed(9))
    s, t = hs @ ws.t(), ht @ wt.t()
    per = DIV("kl")(s, t, reduction="none") + F.cross_entropy(s, labels, reduction="none")
    expected = (per * w).sum() / N
    out = fused_linear_divergence(hs, ws, HiddenSignal(ht, wt), ce_labels=labels, weights=w, chunk_size=7)
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.autograd.grad(out.loss, ws)[0], torch.autograd.grad(expected, ws)[0], rtol=1e-5, atol=1e-6)


def test_token_statistics_match_dense():
    from distill.losses.fused import token_statistics
    hs, ws, ht, wt, _ = inputs(10)
    h, d = token_statistics(hs.detach(), ws.detach(), DenseSignal(ht @ wt.t()), vocab_size=V, chunk_size=6)
    s = torch.log_softmax(hs @ ws.t(), -1)
    torch.testing.assert_close(h, -(s.exp() * s).sum(-1) / torch.log(torch.tensor(float(V))))
    torch.testing.assert_close(d, DIV("reverse_kl")(hs @ ws.t(), ht @ wt.t(), reduction="none").detach())
    assert ((h >= 0) & (h <= 1)).all()
