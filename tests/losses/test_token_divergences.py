"""Token divergences: slow references, special cases, and the shared conventions."""
import math

import pytest
import torch

from distill.losses import kl, reverse_kl
from distill.losses import DIVERGENCES, akl, jsd, skew_kl, skew_reverse_kl, taid, tvd
from tests.losses import reference as R


def logits(seed, shape=(2, 3, 11), scale=2.0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale


def per_position(fn, s, t):
    return [fn(R.softmax(sr), R.softmax(tr)) for sr, tr in zip(s.reshape(-1, s.shape[-1]).double().tolist(),
                                                            t.reshape(-1, t.shape[-1]).double().tolist())]


def check(got, expected):
    torch.testing.assert_close(got.reshape(-1).double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-6)


def test_jsd_reference_and_endpoints():
    s, t = logits(0), logits(1)
    beta = 0.3

    def ref(ps, pt):
        m = [beta * a + (1 - beta) * b for a, b in zip(pt, ps)]
        return beta * R.kl(pt, m) + (1 - beta) * R.kl(ps, m)
    check(jsd(s, t, beta=beta, reduction="none"), per_position(ref, s, t))
    assert torch.equal(jsd(s, t, beta=0.0), kl(s, t)) and torch.equal(jsd(s, t, beta=1.0), reverse_kl(s, t))
    half = jsd(s, t, beta=0.5, reduction="none")
    torch.testing.assert_close(half, jsd(t, s, beta=0.5, reduction="none"))  # beta = 0.5 is symmetric
    assert (half <= math.log(2) + 1e-6).all()


def test_skew_divergences_reference():
    s, t, a = logits(2), logits(3), 0.1
    check(skew_kl(s, t, alpha=a, reduction="none"),
          per_position(lambda ps, pt: R.kl(pt, [a * x + (1 - a) * y for x, y in zip(pt, ps)]), s, t))
    check(skew_reverse_kl(s, t, alpha=a, reduction="none"),
          per_position(lambda ps, pt: R.kl(ps, [a * y + (1 - a) * x for x, y in zip(pt, ps)]), s, t))
    torch.testing.assert_close(skew_kl(s, t, alpha=0.0), kl(s, t))
    torch.testing.assert_close(skew_reverse_kl(s, t, alpha=0.0), reverse_kl(s, t))


def test_tvd_reference():
    s, t = logits(4), logits(5)
    check(tvd(s, t, reduction="none"), per_position(lambda ps, pt: 0.5 * sum(abs(a - b) for a, b in zip(pt, ps)), s, t))


def test_akl_reference():
    s, t = logits(6), logits(7)

    def ref(ps, pt, mu=0.5):
        order = sorted(range(len(pt)), key=lambda i: -pt[i])
        cum, head, tail = 0.0, 0.0, 0.0
        for rank, i in enumerate(order):
            cum += pt[i]
            gap = abs(pt[i] - ps[i])
            if cum > mu and rank > 0:  # the top-1 token is always head
                tail += gap
            else:
                head += gap
        return head / (head + tail) * R.kl(pt, ps) + tail / (head + tail) * R.kl(ps, pt)
    check(akl(s, t, reduction="none"), per_position(ref, s, t))
    peaked = t.clone()
    peaked[..., 0] = 20.0  # top-1 mass > mu: the head is that token alone, not empty
    check(akl(s, peaked, reduction="none"), per_position(ref, s, peaked))


def test_taid_reference_and_t1_is_kl():
    s, t = logits(8), logits(9)
    tt = 0.4

    def ref(sr, tr):
        target = R.softmax([(1 - tt) * a + tt * b for a, b in zip(sr, tr)])
        return R.kl(target, R.softmax(sr))
    rows = zip(s.reshape(-1, 11).double().tolist(), t.reshape(-1, 11).double().tolist())
    check(taid(s, t, t=tt, reduction="none"), [ref(a, b) for a, b in rows])
    torch.testing.assert_close(taid(s, t, t=1.0), kl(s, t))
    assert taid(s, t, t=0.0).item() == pytest.approx(0.0, abs=1e-7)
    x = s.clone().requires_grad_(True)  # the target's student part carries no gradient
    taid(x, t, t=0.5).backward()
    target = torch.softmax(0.5 * s + 0.5 * t, -1)
    torch.testing.assert_close(x.grad, (torch.softmax(s, -1) - target) / s[..., 0].numel())


@pytest.mark.parametrize("name", DIVERGENCES.names())
def test_shared_conventions(name):
    fn = DIVERGENCES.get(name).obj
    kw = {"t": 0.7} if name == "taid" else {}
    s, t = logits(10), logits(11)
    assert fn(s, s.clone(), **kw).item() == pytest.approx(0.0, abs=1e-6)       # zero on identical inputs
    assert (fn(s, t, reduction="none", **kw) >= -1e-7).all()                    # non-negative
    mask = torch.tensor([[True, False, True], [False, False, True]])
    per = fn(s, t, reduction="none", **kw)
    torch.testing.assert_close(fn(s, t, mask=mask, **kw), per[mask].mean())
    none = torch.zeros(2, 3, dtype=torch.bool)
    x = s.clone().requires_grad_(True)
    out = fn(x, t, mask=none, **kw)
    out.backward()
    assert out.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))      # all-masked: exactly 0, no NaN
    assert fn(s.bfloat16(), t.bfloat16(), **kw).dtype == torch.float32        # float32 math
    flat = fn(s.reshape(-1, 11), t.reshape(-1, 11), reduction="none", **kw)      # (N, V) == (B, T, V)
    torch.testing.assert_close(flat, per.reshape(-1))


@pytest.mark.parametrize("name", DIVERGENCES.names())
def test_gradcheck_float64(name):
    fn = DIVERGENCES.get(name).obj
    kw = {"t": 0.6} if name == "taid" else {"beta": 0.3} if name == "jsd" else {}
    s = logits(12, (4, 6)).double().requires_grad_(True)
    t = logits(13, (4, 6)).double()
    mask = torch.tensor([True, True, False, True])
    if name in ("akl", "taid"):  # stop-gradients by design: finite differences see what backward must not
        pytest.skip("checked analytically in test_akl_gradient_uses_fixed_weights / test_taid_reference_and_t1_is_kl")
    assert torch.autograd.gradcheck(lambda x: fn(x, t, temperature=1.5, mask=mask, **kw), (s,), eps=1e-6, atol=1e-6)


def test_akl_gradient_uses_fixed_weights():
    from distill.losses.divergences import kl_terms, log_probs_pair
    from distill.losses.token import akl_weights
    s = logits(14, (4, 6)).double().requires_grad_(True)
    t = logits(15, (4, 6)).double()
    (g1,) = torch.autograd.grad(akl(s, t), s)
    sl, tl = log_probs_pair(s, t, 1.0)
    wh, wt = akl_weights(sl, tl)
    (g2,) = torch.autograd.grad((wh * kl_terms(tl, sl) + wt * kl_terms(sl, tl)).mean(), s)
    torch.testing.assert_close(g1, g2)
