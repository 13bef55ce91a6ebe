"""Classification logit losses against slow loop references, plus their known properties."""
import math

import pytest
import torch
import torch.nn.functional as F

from distill import losses as L
import distill.losses.online  # noqa: F401  (L.online)
from tests.losses import reference as R

torch.manual_seed(0)
B, C = 6, 7


def pair(seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, C, generator=g) * scale, torch.randn(B, C, generator=g) * scale, torch.randint(0, C, (B,), generator=g)


def close(a, b, tol=1e-5):
    assert float(a) == pytest.approx(float(b), rel=tol, abs=tol)


# ---------------------------------------------------------------- LS-KD

def test_ls_kd_reference_and_properties():
    s, t, _ = pair()
    T = 2.0
    expected = 0.0
    for srow, trow in zip(R.rows(s), R.rows(t)):
        zs = [(x - R.mean(srow)) / (R.std_unbiased(srow) + 1e-7) for x in srow]
        zt = [(x - R.mean(trow)) / (R.std_unbiased(trow) + 1e-7) for x in trow]
        expected += R.kl(R.softmax(zt, T), R.softmax(zs, T))
    close(L.ls_kd(s, t, temperature=T), T * T * expected / B)
    # invariant to any per-sample affine transform of the logits (that is the point of it)
    close(L.ls_kd(3 * s + 5, t - 2, temperature=T), L.ls_kd(s, t, temperature=T))
    assert L.ls_kd(s, 2 * s + 1).item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------- DKD

def slow_dkd(s, t, y, alpha, beta, T):
    total_t, total_n = 0.0, 0.0
    for srow, trow, label in zip(R.rows(s), R.rows(t), y.tolist()):
        ps, pt = R.softmax(srow, T), R.softmax(trow, T)
        bs, bt = [ps[label], 1 - ps[label]], [pt[label], 1 - pt[label]]
        total_t += R.kl(bt, bs)
        ns = R.softmax([x / T for i, x in enumerate(srow) if i != label], 1.0)
        nt = R.softmax([x / T for i, x in enumerate(trow) if i != label], 1.0)
        total_n += R.kl(nt, ns)
    return T * T * (alpha * total_t + beta * total_n) / len(srow and R.rows(s))


@pytest.mark.parametrize("alpha,beta,T", [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0)])
def test_dkd_reference(alpha, beta, T):
    s, t, y = pair(1)
    close(L.dkd(s, t, y, alpha=alpha, beta=beta, temperature=T), slow_dkd(s, t, y, alpha, beta, T), 1e-4)


def test_dkd_zero_on_identical_and_stable_when_confident():
    s, _, y = pair(2)
    assert L.dkd(s, s.clone(), y).item() == pytest.approx(0.0, abs=1e-6)
    confident = s.clone()
    confident[torch.arange(B), y] = 200.0  # p_target == 1 in float32: mdistiller's log(0) case
    s2 = confident.clone().requires_grad_(True)
    loss = L.dkd(s2, s.clone(), y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s2.grad).all()


def test_dkd_alpha_beta_zero_gives_kd_identity():
    """KD = TCKD + (1 - p_t^target) NCKD (the DKD paper's decomposition), checked numerically."""
    s, t, y = pair(3)
    T = 4.0
    pt_target = F.softmax(t / T, 1)[torch.arange(B), y]
    per_tckd = torch.stack([L.dkd(s[i:i + 1], t[i:i + 1], y[i:i + 1], alpha=1, beta=0, temperature=T) for i in range(B)])
    per_nckd = torch.stack([L.dkd(s[i:i + 1], t[i:i + 1], y[i:i + 1], alpha=0, beta=1, temperature=T) for i in range(B)])
    torch.testing.assert_close((per_tckd + (1 - pt_target) * per_nckd).mean(), L.hinton_kd(s, t, temperature=T), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- PLD

def slow_pld(s, t, y, T):
    total = 0.0
    for srow, trow, label in zip(R.rows(s), R.rows(t), y.tolist()):
        rest = sorted([c for c in range(len(srow)) if c != label], key=lambda c: -trow[c])
        order = [label] + rest
        weights = R.softmax(trow, T)
        for k, c in enumerate(order):
            suffix = [srow[o] for o in order[k:]]
            total += weights[c] * (R.logsumexp(suffix) - srow[c])
    return total / len(R.rows(s))


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_pld_reference(T):
    s, t, y = pair(4)
    close(L.pld(s, t, y, temperature=T), slow_pld(s, t, y, T), 1e-5)


def test_pld_is_minimised_by_the_teacher_ranking():
    """A student whose logits follow pi* with large gaps has a lower loss than any shuffled one."""
    _, t, y = pair(5)
    order = L.pld.__globals__["teacher_optimal_order"](t, y)
    good = torch.zeros(B, C)
    good.scatter_(1, order, torch.arange(C, 0, -1, dtype=torch.float32).expand(B, C) * 10)
    bad = good[:, torch.randperm(C)]
    assert L.pld(good, t, y) < L.pld(bad, t, y)
    assert L.pld(good, t, y) < 0.05


# ---------------------------------------------------------------- DIST

def test_dist_reference():
    s, t, _ = pair(6)
    T, beta, gamma = 4.0, 1.5, 0.5
    ys = [R.softmax(r, T) for r in R.rows(s)]
    yt = [R.softmax(r, T) for r in R.rows(t)]
    inter = 1 - R.mean([R.pearson(a, b) for a, b in zip(ys, yt)])
    cols_s, cols_t = list(zip(*ys)), list(zip(*yt))
    intra = 1 - R.mean([R.pearson(a, b) for a, b in zip(cols_s, cols_t)])
    close(L.dist(s, t, beta=beta, gamma=gamma, temperature=T), T * T * (beta * inter + gamma * intra), 1e-4)
    assert L.dist(s, s.clone()).item() == pytest.approx(0.0, abs=1e-5)


# ---------------------------------------------------------------- DHKD binary KL-norm

def test_binary_kl_norm_reference():
    a, t, _ = pair(7)
    T = 2.0
    expected = 0.0
    for arow, trow in zip(R.rows(a), R.rows(t)):
        for x, z in zip(arow, trow):
            p = 1 / (1 + math.exp(-(x - z) / T))
            expected += 0.5 * math.log(0.5 / p) + 0.5 * math.log(0.5 / (1 - p))
    close(L.binary_kl_norm(a, t, temperature=T), T * T * expected / B)
    assert L.binary_kl_norm(t.clone(), t).item() == pytest.approx(0.0, abs=1e-6)
    assert L.binary_kl_norm(t + 1.0, t) > 0  # shift-sensitive, unlike softmax KL


# ---------------------------------------------------------------- SinKD

def test_sinkhorn_reference():
    s, t, _ = pair(8)
    T, eps, iters = 2.0, 0.1, 20
    ps = [R.softmax(r, T) for r in R.rows(s)]
    pt = [R.softmax(r, T) for r in R.rows(t)]
    W = [[sum(abs(a - b) for a, b in zip(pi, pj)) for pj in pt] for pi in ps]
    K = [[math.exp(-w / eps) for w in row] for row in W]
    for _ in range(iters):
        K = [[v / sum(row) for v in row] for row in K]
        cols = [sum(K[i][j] for i in range(B)) for j in range(B)]
        K = [[K[i][j] / cols[j] for j in range(B)] for i in range(B)]
    expected = sum(K[i][j] * W[i][j] for i in range(B) for j in range(B)) / B
    close(L.sinkhorn_distance(s, t, temperature=T, epsilon=eps, iterations=iters), expected, 1e-4)


def test_sinkhorn_small_on_identical_batches():
    s, t, _ = pair(9, scale=4.0)
    assert L.sinkhorn_distance(s, s.clone(), epsilon=0.01, iterations=50) < 0.2 * L.sinkhorn_distance(s, t, epsilon=0.01, iterations=50)


# ---------------------------------------------------------------- online: DML and BD-KD

def test_mutual_learning_reference_and_detach():
    s, t, _ = pair(10)
    peer2 = torch.randn(B, C)
    expected = R.mean([R.mean([R.kl(R.softmax(pr), R.softmax(sr)) for sr, pr in zip(R.rows(s), R.rows(p))]) for p in (t, peer2)])
    close(L.mutual_learning(s, [t, peer2]), expected)
    peer = t.clone().requires_grad_(True)
    L.mutual_learning(s.requires_grad_(True), [peer]).backward()
    assert peer.grad is None, "peers are targets, not trained by this term"


def test_balanced_divergence_reference():
    s, t, _ = pair(11)
    T = 2.0
    total = 0.0
    for srow, trow in zip(R.rows(s), R.rows(t)):
        ps, pt = R.softmax(srow, T), R.softmax(trow, T)
        hs = -sum(p * math.log(p) for p in ps)
        ht = -sum(p * math.log(p) for p in pt)
        w = ht / (hs + ht)
        total += w * R.kl(pt, ps) + (1 - w) * R.kl(ps, pt)
    close(L.balanced_divergence(s, t, temperature=T), T * T * total / B)
    assert L.balanced_divergence(s, s.clone()).item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------- OFA

@pytest.mark.parametrize("eps", [1.0, 1.5])
def test_ofa_reference(eps):
    s, t, y = pair(12)
    total = 0.0
    for srow, trow, label in zip(R.rows(s), R.rows(t), y.tolist()):
        pt, logps = R.softmax(trow), [math.log(p) for p in R.softmax(srow)]
        for c in range(C):
            onehot = 1.0 if c == label else 0.0
            total += -((pt[c] + onehot) ** eps - onehot) * logps[c]
    close(L.ofa_loss(s, t, y, epsilon=eps), total / B)


def test_ofa_eps1_is_soft_cross_entropy():
    s, t, y = pair(13)
    soft_ce = -(F.softmax(t, 1) * F.log_softmax(s, 1)).sum(1).mean() - F.log_softmax(s, 1)[torch.arange(B), y].mean() * 0
    # eps = 1: weights are p_t for every class (the +onehot and -onehot cancel)
    close(L.ofa_loss(s, t, y, epsilon=1.0), soft_ce)


# ---------------------------------------------------------------- focal, multi-teacher, TGeo

def test_focal_reference_and_gamma0_is_ce():
    s, _, y = pair(14)
    w = torch.rand(C) + 0.5
    expected = R.mean([-w[label].item() * (1 - R.softmax(r)[label]) ** 2 * math.log(R.softmax(r)[label])
                       for r, label in zip(R.rows(s), y.tolist())])
    close(L.focal_loss(s, y, gamma=2.0, class_weights=w), expected)
    close(L.focal_loss(s, y, gamma=0.0), F.cross_entropy(s, y))


def ca_mkd_reference(s, teachers, y, T):
    """CA-MKD's official loss, written as loops: w_kb = (1 - softmax_k(CE_kb)) / (K - 1),
    L = T^2 / (B K) sum_kb w_kb KL(p_kb^T || p_sb^T)."""
    K = len(teachers)
    total, weights = 0.0, []
    for b, (sr, label) in enumerate(zip(R.rows(s), y.tolist())):
        ce = [-math.log(R.softmax(R.rows(t)[b])[label]) for t in teachers]
        z = sum(math.exp(c) for c in ce)
        w = [(1 - math.exp(c) / z) / (K - 1) for c in ce]
        weights.append(w)
        total += sum(wk * R.kl(R.softmax(R.rows(t)[b], T), R.softmax(sr, T)) for wk, t in zip(w, teachers))
    return T * T * total / (len(y) * K), weights


@pytest.mark.parametrize("k", [2, 3, 5])
def test_multi_teacher_confidence_matches_ca_mkd_official(k):
    s, t1, y = pair(15)
    g = torch.Generator().manual_seed(k)
    teachers = [t1] + [torch.randn(B, C, generator=g) * 3 for _ in range(k - 1)]
    T = 3.0
    w = L.teacher_weights(teachers, y, "confidence")
    expected, ref_w = ca_mkd_reference(s, teachers, y, T)
    torch.testing.assert_close(w.t().double(), torch.tensor(ref_w, dtype=torch.float64), rtol=1e-5, atol=1e-6)
    assert torch.allclose(w.sum(0), torch.ones(B))
    close(L.multi_teacher_kd(s, teachers, weights=w, temperature=T, average_over_teachers=True), expected, 1e-4)
    if k == 2:  # the two-teacher case equals a softmax of -CE
        ce = torch.stack([F.cross_entropy(t, y, reduction="none") for t in teachers])
        torch.testing.assert_close(w, F.softmax(-ce, dim=0))


def test_multi_teacher_average_and_single_teacher_is_kd():
    s, t1, y = pair(16)
    t2 = torch.randn(B, C) * 2
    T = 3.0
    single = L.teacher_weights([t1], y, "average")
    close(L.multi_teacher_kd(s, [t1], weights=single, temperature=T), L.hinton_kd(s, t1, temperature=T))
    close(L.multi_teacher_kd(s, [t1], weights=L.teacher_weights([t1], y, "confidence"), temperature=T,
                             average_over_teachers=True), L.hinton_kd(s, t1, temperature=T))
    fixed = L.teacher_weights([t1, t2], None, "average", [3.0, 1.0])
    assert torch.allclose(fixed[:, 0], torch.tensor([0.75, 0.25]))
    mean_kd = (L.hinton_kd(s, t1, temperature=T) + L.hinton_kd(s, t2, temperature=T)) / 2  # AVER-MKD
    close(L.multi_teacher_kd(s, [t1, t2], weights=L.teacher_weights([t1, t2], y, "average"), temperature=T), mean_kd)


def test_geometry_features_layout():
    s, t, y = pair(16)
    tbar = F.softmax(torch.randn(C, C), 1)
    f = L.geometry_features(s, t, tbar, y)
    assert f.shape == (B, 9 * C)
    torch.testing.assert_close(f[:, :C], F.softmax(s, 1))
    torch.testing.assert_close(f[:, 2 * C:3 * C], tbar[y])
    torch.testing.assert_close(f[:, 3 * C:4 * C], F.one_hot(y, C).float())
    alpha = torch.full((B,), 0.25)
    expected = 0.75 * F.cross_entropy(s, y) + 0.25 * L.hinton_kd(s, t, temperature=4.0)
    close(L.fused_kd_ce(s, t, y, alpha, temperature=4.0), expected)


# ---------------------------------------------------------------- gradient checks (float64)

CASES = {
    "ls_kd": lambda s, t, y: L.ls_kd(s, t),
    "dkd": lambda s, t, y: L.dkd(s, t, y),
    "pld": lambda s, t, y: L.pld(s, t, y, temperature=2.0),
    "dist": lambda s, t, y: L.dist(s, t, temperature=2.0),
    "binary_kl_norm": lambda s, t, y: L.binary_kl_norm(s, t),
    "sinkhorn": lambda s, t, y: L.sinkhorn_distance(s, t, iterations=5),
    "ofa": lambda s, t, y: L.ofa_loss(s, t, y, epsilon=1.3),
    "focal": lambda s, t, y: L.focal_loss(s, y),
    "mutual_learning": lambda s, t, y: L.mutual_learning(s, [t]),
    "multi_teacher": lambda s, t, y: L.multi_teacher_kd(s, [t, t.flip(0)], weights=L.teacher_weights([t, t.flip(0)], y, "confidence")),
    "fused_kd_ce": lambda s, t, y: L.fused_kd_ce(s, t, y, torch.linspace(0.1, 0.9, B, dtype=torch.float64)),
    # BD-KD's entropy weights are detached by design: check the weighted form with the weights fixed
    "bd_kd_weighted": lambda s, t, y: L.online.weighted_divergences(s, t, torch.linspace(0.2, 0.8, B, dtype=torch.float64)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck_float64(name):
    fn = CASES[name]
    s, t, y = pair(17, scale=1.0)
    s, t = s.double().requires_grad_(True), t.double()
    assert fn(s, t, y).dtype == torch.float64
    assert torch.autograd.gradcheck(lambda x: fn(x, t, y), (s,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_bd_kd_gradient_treats_weights_as_constants():
    s, t, _ = pair(18)
    s = s.double().requires_grad_(True)
    t = t.double()
    with torch.no_grad():
        h_s, h_t = L.entropy(s), L.entropy(t)
    (g1,) = torch.autograd.grad(L.balanced_divergence(s, t), s)
    (g2,) = torch.autograd.grad(L.online.weighted_divergences(s, t, h_t / (h_s + h_t)), s)
    torch.testing.assert_close(g1, g2)
