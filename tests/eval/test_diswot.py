"""DisWOT distances against slow references, and the properties the formula promises."""
import math

import pytest
import torch
from torch import nn

from distill.eval.diswot import class_activation_maps, diswot, gram_distance, normalized_gram


def slow_gram_distance(a, b):
    """mean_ij (G_a - G_b)^2 with G = X X^T, rows scaled to unit norm, written out with Python loops."""
    def gram(x):
        rows = [[float(v) for v in r.reshape(-1)] for r in x]
        g = [[sum(p * q for p, q in zip(ri, rj)) for rj in rows] for ri in rows]
        return [[v / math.sqrt(sum(w * w for w in row)) for v in row] for row in g]
    ga, gb = gram(a), gram(b)
    n = len(ga)
    return sum((ga[i][j] - gb[i][j]) ** 2 for i in range(n) for j in range(n)) / (n * n)


def fc_weight_grad(features, labels, num_classes, seed=0):
    """What the official code reads: fc.weight.grad after backward of the mean cross-entropy."""
    torch.manual_seed(seed)
    fc = nn.Linear(features.shape[1], num_classes)
    logits = fc(features)
    nn.functional.cross_entropy(logits, labels).backward()
    return fc.weight.grad, logits.detach()


def batch(seed=0, n=12, d=7, k=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, k, (n,), generator=g)


def test_class_activation_maps_equal_the_fc_weight_gradient_of_the_cross_entropy():
    h, y = batch()
    grad, logits = fc_weight_grad(h, y, 5)
    torch.testing.assert_close(class_activation_maps(h, logits, y).float(), grad, rtol=1e-5, atol=1e-6)


def test_class_activation_maps_keep_only_the_requested_classes():
    h, y = batch(k=9)
    grad, logits = fc_weight_grad(h, y, 9)
    classes = torch.tensor([7, 0, 3])
    torch.testing.assert_close(class_activation_maps(h, logits, y, classes).float(), grad[classes], rtol=1e-5, atol=1e-6)


def test_a_confident_teacher_keeps_nonzero_maps():
    """Logits 150 apart: float32 softmax residuals would be exactly 0; the float64 path keeps their direction."""
    h, y = batch()
    logits = torch.nn.functional.one_hot(y, 5).float() * 150
    maps = class_activation_maps(h, logits, y)
    assert torch.all(maps.norm(dim=1) > 0)
    assert float((logits.softmax(1) - torch.nn.functional.one_hot(y, 5)).abs().max()) == 0.0


@pytest.mark.parametrize("shape_a, shape_b", [((6, 5), (6, 5)), ((6, 3, 2, 2), (6, 7)), ((4, 9), (4, 2))])
def test_gram_distance_matches_the_slow_reference(shape_a, shape_b):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(*shape_a, generator=g), torch.randn(*shape_b, generator=g)
    assert float(gram_distance(a, b)) == pytest.approx(slow_gram_distance(a, b), rel=1e-9)


def test_diswot_combines_the_two_distances_and_its_score_is_their_negated_sum():
    g = torch.Generator().manual_seed(2)
    ft, fs = torch.randn(8, 4, 3, 3, generator=g), torch.randn(8, 6, 2, 2, generator=g)
    mt, ms = torch.randn(5, 10, generator=g), torch.randn(5, 3, generator=g)
    out = diswot(ft, fs, mt, ms)
    assert out.semantic == pytest.approx(slow_gram_distance(mt, ms), rel=1e-9)
    assert out.relation == pytest.approx(slow_gram_distance(ft, fs), rel=1e-9)
    assert out.score == pytest.approx(-(out.semantic + out.relation))


def test_the_teacher_against_itself_is_zero_and_the_best_score():
    g = torch.Generator().manual_seed(3)
    f, m = torch.relu(torch.randn(16, 8, 4, 4, generator=g)), torch.randn(10, 8, generator=g)
    same = diswot(f, f, m, m)
    assert same.semantic == 0 and same.relation == 0 and same.score == 0 and not math.copysign(1, same.score) < 0
    other = diswot(f, torch.relu(torch.randn(16, 8, 4, 4, generator=g)), m, torch.randn(10, 8, generator=g))
    assert other.score < same.score


def test_distances_ignore_feature_scale_and_orthogonal_changes_of_basis():
    h, y = batch(n=20, d=6)
    logits = torch.randn(20, 5, generator=torch.Generator().manual_seed(4))
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(5)))
    maps = class_activation_maps(h, logits, y)
    for changed in (3.7 * h, -0.02 * h, h @ q):
        out = diswot(h, changed, maps, class_activation_maps(changed, logits, y))
        assert out.relation == pytest.approx(0, abs=1e-12) and out.semantic == pytest.approx(0, abs=1e-12)


def test_a_random_projection_of_the_teacher_ranks_below_the_teacher_itself():
    h, y = batch(n=32, d=16)
    logits = torch.randn(32, 5, generator=torch.Generator().manual_seed(6))
    projection = torch.randn(16, 4, generator=torch.Generator().manual_seed(7))
    maps = class_activation_maps(h, logits, y)
    identical = diswot(h, h.clone(), maps, class_activation_maps(h.clone(), logits, y))
    projected = diswot(h, h @ projection, maps, class_activation_maps(h @ projection, logits, y))
    assert projected.relation > 1e-3 and projected.semantic > 1e-3
    assert identical.score > projected.score


def test_distances_grow_with_the_noise_added_to_the_student():
    h, _ = batch(n=24, d=10)
    noise = torch.randn(24, 10, generator=torch.Generator().manual_seed(8))
    distances = [float(gram_distance(h, h + eps * noise)) for eps in (0.0, 0.05, 0.3, 2.0)]
    assert distances[0] == 0 and distances == sorted(distances) and distances[-1] > 10 * distances[1]


def test_distances_are_bounded_and_rows_must_match():
    g = torch.Generator().manual_seed(9)
    a, b = torch.randn(7, 3, generator=g), torch.randn(7, 5, generator=g)
    assert 0 <= float(gram_distance(a, b)) <= 4 / 7
    torch.testing.assert_close(normalized_gram(a).norm(dim=1), torch.ones(7, dtype=torch.float64))
    with pytest.raises(ValueError, match="same samples"):
        gram_distance(a, torch.randn(6, 3))
