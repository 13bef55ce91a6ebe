"""The teacher signal and the divergence registry: masked rows, float64, one teacher argument, registry options."""
import pytest
import torch
import torch.nn.functional as F

from distill.config import from_dict
from distill.errors import ConfigError
from distill.losses import DIVERGENCES, DenseSignal, HiddenSignal, TopKSignal, divergence_config, fused_linear_divergence
from distill.losses.kl_grad import cross_entropy_with_grad
from distill.losses.registry import DivergenceConfig
from distill.losses.sparse import topk_with_tail

N, H, V = 13, 6, 17
OPTIONS = {"jsd": {"beta": 0.3}, "taid": {"t": 0.6}, "skew_kl": {"alpha": 0.2}, "skew_reverse_kl": {"alpha": 0.2},
           "akl": {"mu": 0.4}}


def data(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    hs = torch.randn(N, H, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)
    ws = (torch.randn(V, H, generator=g, dtype=torch.float64) * 0.5).to(dtype).requires_grad_(True)
    ht = torch.randn(N, H, generator=g, dtype=torch.float64).to(dtype)
    wt = (torch.randn(V, H, generator=g, dtype=torch.float64) * 0.5).to(dtype)
    return hs, ws, ht, wt


@pytest.mark.parametrize("name", DIVERGENCES.names())
def test_masked_positions_give_zero_values_and_gradients_whatever_they_hold(name):
    """A masked row with an all -inf teacher and NaN student logits changes nothing (it gave NaN gradients)."""
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(5, V, generator=g), torch.randn(5, V, generator=g)
    mask = torch.tensor([True, False, True, True, False])
    s_bad, t_bad = s.clone(), t.clone()
    t_bad[1] = float("-inf")
    s_bad[4] = float("nan")
    fn = DIVERGENCES.get(name).obj
    x = s_bad.clone().requires_grad_(True)
    value = fn(x, t_bad, mask=mask, temperature=1.5, **OPTIONS.get(name, {}))
    value.backward()
    clean = s[mask].clone().requires_grad_(True)
    expected = fn(clean, t[mask], temperature=1.5, **OPTIONS.get(name, {}))
    expected.backward()
    torch.testing.assert_close(value, expected)
    assert torch.isfinite(x.grad).all() and not x.grad[~mask].any()
    torch.testing.assert_close(x.grad[mask], clean.grad)


@pytest.mark.parametrize("name", DIVERGENCES.names())
def test_fused_masked_rows_never_reach_the_head_gradient(name):
    hs, ws, ht, wt = data(2)
    mask = torch.ones(N, dtype=torch.bool)
    mask[[2, 7]] = False
    bad_h = hs.detach().clone()
    bad_h[2] = float("nan")
    bad_t = ht.clone()
    teacher_logits = bad_t @ wt.t()
    teacher_logits[7] = float("-inf")
    x = bad_h.requires_grad_(True)
    out = fused_linear_divergence(x, ws, DenseSignal(teacher_logits), divergence=name, mask=mask, chunk_size=4,
                                  **OPTIONS.get(name, {}))
    g_x, g_w = torch.autograd.grad(out.loss, (x, ws))
    assert torch.isfinite(g_w).all() and torch.isfinite(g_x).all() and not g_x[~mask].any()
    ref = fused_linear_divergence(hs[mask], ws, DenseSignal((ht @ wt.t())[mask]), divergence=name, chunk_size=4,
                                  **OPTIONS.get(name, {}))
    torch.testing.assert_close(out.loss, ref.loss)
    torch.testing.assert_close(g_w, torch.autograd.grad(ref.loss, ws)[0])


@pytest.mark.parametrize("name", DIVERGENCES.names())
@pytest.mark.parametrize("source", ["live", "store"])
def test_float64_inputs_work_and_stay_float64(name, source):
    """The closed-form KL path crashed on float64 (student upcast to float32, teacher left float64)."""
    if source == "store" and name != "kl":
        pytest.skip("other divergences from a store are covered in float32 by test_sparse")
    hs, ws, ht, wt = data(3, torch.float64)
    labels = torch.randint(0, V, (N,), generator=torch.Generator().manual_seed(4))
    teacher_logits = ht @ wt.t()
    if source == "live":
        signal = HiddenSignal(ht, wt)
        reference = DIVERGENCES.get(name).obj(hs @ ws.t(), teacher_logits, temperature=1.3, **OPTIONS.get(name, {}))
    else:
        signal = TopKSignal(*topk_with_tail(teacher_logits, V, temperature=1.3), temperature=1.3)
        reference = DIVERGENCES.get("kl").obj(hs @ ws.t(), teacher_logits, temperature=1.3)
    out = fused_linear_divergence(hs, ws, signal, divergence=name, temperature=1.3, ce_labels=labels, kd_weight=0.6,
                                  ce_weight=0.4, chunk_size=5, **OPTIONS.get(name, {}))
    expected = 0.6 * reference + 0.4 * F.cross_entropy(hs @ ws.t(), labels)
    assert out.loss.dtype == torch.float64
    torch.testing.assert_close(out.loss, expected, rtol=1e-10, atol=1e-12)
    for a, b in zip(torch.autograd.grad(out.loss, (hs, ws)), torch.autograd.grad(expected, (hs, ws))):
        assert a.dtype == torch.float64
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_divergence_given_by_config_equals_name_and_options():
    hs, ws, ht, wt = data(5)
    by_name = fused_linear_divergence(hs, ws, HiddenSignal(ht, wt), divergence="jsd", beta=0.3)
    by_config = fused_linear_divergence(hs, ws, HiddenSignal(ht, wt), divergence=divergence_config("jsd", beta=0.3))
    torch.testing.assert_close(by_name.loss, by_config.loss)
    assert not torch.equal(by_name.loss, fused_linear_divergence(hs, ws, HiddenSignal(ht, wt), divergence="jsd").loss)
    with pytest.raises(ValueError, match="takes the options"):
        divergence_config("kl", beta=0.3)


def test_registry_configs_validate_options_at_load_time():
    from dataclasses import dataclass

    from distill.config import option
    from distill.losses.registry import DIVERGENCES as REG

    @dataclass
    class Holder:
        divergence: DivergenceConfig = option(default_factory=lambda: divergence_config("kl"), registry=REG)

    assert from_dict(Holder, {"divergence": "reverse_kl"}).divergence.name == "reverse_kl"
    assert from_dict(Holder, {"divergence": {"name": "jsd", "beta": 0.9}}).divergence.options() == {"beta": 0.9}
    with pytest.raises(ConfigError, match=r"divergence.beta = 2.0: must be <= 1.0"):
        from_dict(Holder, {"divergence": {"name": "jsd", "beta": 2.0}})
    with pytest.raises(ConfigError, match=r"divergence.alpha: unknown key"):
        from_dict(Holder, {"divergence": {"name": "jsd", "alpha": 0.1}})
    with pytest.raises(ConfigError, match=r"unknown divergence \(did you mean 'jsd'\?\)"):
        from_dict(Holder, {"divergence": "jsdd"})


def test_teacher_signal_length_must_match():
    hs, ws, ht, wt = data(6)
    with pytest.raises(ValueError, match="has 12 positions, the student 13"):
        fused_linear_divergence(hs, ws, HiddenSignal(ht[:-1], wt))
    with pytest.raises(ValueError, match="needs a teacher signal"):
        fused_linear_divergence(hs, ws)


def test_select_keeps_positions_in_order():
    hs, ws, ht, wt = data(7)
    ids, logp, tail = topk_with_tail(ht @ wt.t(), 4)
    index = torch.tensor([5, 1, 9])
    for signal in (HiddenSignal(ht, wt), DenseSignal(ht @ wt.t()), TopKSignal(ids, logp, tail)):
        part = signal.select(index).chunk(0, 3, V, 1.0).teacher_logp(1.0)
        torch.testing.assert_close(part, signal.chunk(0, N, V, 1.0).teacher_logp(1.0)[index])


def test_cross_entropy_closed_form_matches_autograd_and_ignores_minus_100():
    g = torch.Generator().manual_seed(8)
    logits = (torch.randn(9, V, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    labels = torch.randint(0, V, (9,), generator=g)
    labels[[0, 4]] = -100
    per, grad = cross_entropy_with_grad(logits.detach(), labels)
    expected = F.cross_entropy(logits, labels, reduction="none", ignore_index=-100)
    torch.testing.assert_close(per, expected.detach())
    (auto,) = torch.autograd.grad(expected.sum(), logits)
    torch.testing.assert_close(grad, auto)
    assert not grad[[0, 4]].any()


def test_a_new_divergence_is_one_registered_function():
    """The README's example: registered from outside, it works in the fused loss and in recipes."""
    from dataclasses import dataclass

    from distill.losses import register_divergence
    from distill.methods import METHODS

    @dataclass(kw_only=True)
    class HellingerConfig(DivergenceConfig):
        name: str = "hellinger"

    @register_divergence("hellinger", config=HellingerConfig)
    def hellinger_terms(s_logp, t_logp):
        """Squared Hellinger distance 1 - sum_v sqrt(p_s p_t)."""
        return 1 - ((s_logp + t_logp) / 2).exp().sum(-1)
    try:
        hs, ws, ht, wt = data(9)
        out = fused_linear_divergence(hs, ws, HiddenSignal(ht, wt), divergence="hellinger", chunk_size=4)
        p_s, p_t = torch.softmax(hs @ ws.t(), -1), torch.softmax(ht @ wt.t(), -1)
        expected = (1 - (p_s * p_t).sqrt().sum(-1)).mean()
        torch.testing.assert_close(out.loss, expected)
        torch.testing.assert_close(torch.autograd.grad(out.loss, ws)[0], torch.autograd.grad(expected, ws)[0])
        cfg = from_dict(METHODS.get("lm_kd").config, {"name": "lm_kd", "divergence": "hellinger"})
        assert cfg.divergence.name == "hellinger"
    finally:
        DIVERGENCES._entries.pop("hellinger")
