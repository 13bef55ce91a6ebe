"""Cross-tokenizer losses against slow loop references, and their known properties."""
import math

import pytest
import torch

from distill.losses import DIVERGENCES
from distill.losses.alm import alm
from distill.losses.gold import gold_hybrid, jsd_on_probs
from distill.losses.uld import merge_span_rows, sorted_l1, uld
from distill.losses.xtoken import p_kl


def rows(seed, n, v, scale=2.0):
    return torch.randn(n, v, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def ref_sorted_l1(a, b):
    out = []
    for x, y in zip(a.tolist(), b.tolist()):
        x, y = sorted(x, reverse=True), sorted(y, reverse=True)
        width = max(len(x), len(y))
        x, y = x + [0.0] * (width - len(x)), y + [0.0] * (width - len(y))
        out.append(sum(abs(p - q) for p, q in zip(x, y)))
    return out


def test_sorted_l1_and_uld_reference():
    s, t = torch.softmax(rows(0, 5, 7), -1), torch.softmax(rows(1, 5, 11), -1)
    torch.testing.assert_close(sorted_l1(s, t), torch.tensor(ref_sorted_l1(s, t), dtype=torch.float64))
    assert torch.allclose(sorted_l1(s, s), torch.zeros(5, dtype=torch.float64))
    # a permutation of the vocabulary is invisible to ULD (it compares sorted probabilities)
    z = rows(2, 4, 9)
    assert torch.allclose(uld(z, z[:, torch.randperm(9)]), torch.zeros(4), atol=1e-6)


def test_merge_span_rows_reference():
    probs = torch.softmax(rows(3, 6, 5), -1)
    span = torch.tensor([0, 1, 1, 1, 2, 2])
    base = torch.tensor([True, False, False, True, True, False])
    tokens = torch.tensor([0, 3, 1, 4, 2, 2])
    merged = merge_span_rows(probs, span, base, tokens, 3)
    expected = []
    for g in range(3):
        members = [i for i in range(6) if span[i] == g]
        b = next(i for i in members if base[i])
        factor = math.prod(max(float(probs[i, tokens[i]]), 1e-8) for i in members if i != b)
        expected.append((probs[b] * factor).tolist())
    torch.testing.assert_close(merged, torch.tensor(expected, dtype=torch.float64))


def ref_jsd(p, q, beta):
    out = 0.0
    for a, b in zip(p, q):
        ls, lt = math.log(max(a, 1e-8)), math.log(max(b, 1e-8))
        m = (1 - beta) * math.exp(ls) + beta * math.exp(lt)
        out += beta * math.exp(lt) * (lt - math.log(m)) + (1 - beta) * math.exp(ls) * (ls - math.log(m))
    return out


def test_gold_hybrid_reference_and_same_vocabulary_is_jsd():
    s, t = torch.softmax(rows(4, 3, 8), -1), torch.softmax(rows(5, 3, 10), -1)
    ms, mt = torch.tensor([0, 2, 5]), torch.tensor([1, 2, 7])
    got = gold_hybrid(s, t, ms, mt, beta=0.3)
    w_m = 3 / 10
    keep_s, keep_t = [i for i in range(8) if i not in (0, 2, 5)], [i for i in range(10) if i not in (1, 2, 7)]
    for g in range(3):
        matched = ref_jsd(s[g, ms].tolist(), t[g, mt].tolist(), 0.3)
        unmatched = ref_sorted_l1(s[g:g + 1, keep_s], t[g:g + 1, keep_t])[0]
        assert float(got[g]) == pytest.approx(w_m * matched + (1 - w_m) * unmatched, rel=1e-9)
    # one vocabulary: every token matched, weights (1, 0): the generalized JSD of the distributions
    z_s, z_t = rows(6, 4, 9), rows(7, 4, 9)
    same = gold_hybrid(torch.softmax(z_s, -1), torch.softmax(z_t, -1), torch.arange(9), torch.arange(9), beta=0.5)
    expected = DIVERGENCES.get("jsd").obj(z_s, z_t, beta=0.5, reduction="none")
    torch.testing.assert_close(same, expected, rtol=1e-6, atol=1e-8)
    assert jsd_on_probs(torch.softmax(z_s, -1), torch.softmax(z_s, -1), 0.5).abs().max() < 1e-12


def ref_alm(ls, lt, tau, eps, difference):
    out = []
    for s, t in zip(ls, lt):
        s, t = min(s, 0.0) / tau - eps, min(t, 0.0) / tau - eps
        qs, qt = math.exp(s), math.exp(t)
        ce = -(qt * s + (1 - qt) * math.log(1 - qs))
        if difference == "binary_ce":
            out.append(ce)
        elif difference == "binary_kl":
            out.append(ce + qt * t + (1 - qt) * math.log(1 - qt))
        else:
            out.append(qs * (s - t) + (1 - qs) * (math.log(1 - qs) - math.log(1 - qt)))
    return out


@pytest.mark.parametrize("difference", ["binary_ce", "binary_kl", "reverse_binary_kl"])
def test_alm_reference_and_zero_gradient_at_a_match(difference):
    ls = torch.tensor([-3.0, -45.0, -0.2, -310.0], dtype=torch.float64)
    lt = torch.tensor([-2.0, -50.0, -0.1, -300.0], dtype=torch.float64)
    got = alm(ls, lt, difference=difference)
    torch.testing.assert_close(got, torch.tensor(ref_alm(ls.tolist(), lt.tolist(), 100.0, 1e-6, difference), dtype=torch.float64))
    x = lt.clone().requires_grad_(True)
    value = alm(x, lt, difference=difference).sum()
    (grad,) = torch.autograd.grad(value, x)
    assert grad.abs().max() < 1e-9  # a student that matches the teacher gets no push
    if difference != "binary_ce":
        assert value.abs() < 1e-9
    assert torch.isfinite(alm(torch.tensor([0.0]), torch.tensor([0.0]))).all()  # log(1 - e^0) guarded by eps


def ref_p_kl(zs, s_span, zt, t_span, w, g, temperature):
    out = []
    for c in range(g):
        srows = [i for i in range(len(s_span)) if s_span[i] == c]
        trows = [j for j in range(len(t_span)) if t_span[j] == c]
        proj = torch.stack([torch.softmax(zs[i] / temperature, -1) @ w for i in srows]).mean(0)
        proj = proj / (proj.sum() + 1e-10)
        q = torch.stack([torch.log_softmax(zt[j] / temperature, -1) for j in trows]).mean(0)
        out.append(temperature ** 2 * float((q.exp() * (q - (proj + 1e-10).log())).sum()))
    return out


def test_p_kl_reference_and_identity_is_forward_kl():
    zs, zt = rows(8, 5, 6), rows(9, 4, 7)
    w = torch.rand(6, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w = w / w.sum(1, keepdim=True)
    s_span, t_span = torch.tensor([0, 0, 1, 2, 2]), torch.tensor([0, 1, 1, 2])
    got = p_kl(zs, s_span, zt, t_span, w.to_sparse(), 3, temperature=1.5)
    torch.testing.assert_close(got, torch.tensor(ref_p_kl(zs, s_span, zt, t_span, w, 3, 1.5), dtype=torch.float64))
    # one vocabulary, W = I, one-row chunks: the plain forward KL per position
    a, b = rows(10, 4, 6), rows(11, 4, 6)
    same = p_kl(a, torch.arange(4), b, torch.arange(4), torch.eye(6, dtype=torch.float64).to_sparse(), 4)
    torch.testing.assert_close(same, DIVERGENCES.get("kl").obj(a, b, reduction="none"), rtol=1e-7, atol=1e-9)
