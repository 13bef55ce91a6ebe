"""LELP: few-class distillation through pseudo-subclasses read off linear projections of teacher embeddings.

Paper: "Linear Projections of Teacher Embeddings for Few-Class Distillation", Loo, Iliopoulos, Hu, Vee,
2024 (arXiv:2409.20449). With few classes a teacher's soft targets carry little information, so LELP
splits each class into S pseudo-subclasses found in the teacher's embedding space: per class, the top
principal directions of the class's teacher embeddings after projecting out what the teacher's
classifier reads (its null space), randomly rotated so the S directions share the variance; the student
gets S x C outputs and is trained to reproduce the teacher's S x C distribution. Class predictions are
the sums over each class's subclasses.

What is built here (the paper's exact split was not checked line by line; where this departs, it says):
  - the teacher is an embedding model without a classifier, so its head (W, b) is a multinomial
    logistic regression fitted on labelled teacher embeddings (`fit_logistic_head`);
  - P projects onto the null space of W (`null_space_projector`); for class c, V_c (S, D) are the top-S principal
    directions of P (t - mu_c) over the class's examples, rotated by a seeded random orthogonal S x S
    matrix; coordinates are divided by their standard deviation over the class (scale-free);
  - pseudo-subclass logits  Z(c, s) = (W t + b)_c + log_softmax_s( <V_c,s, P (t - mu_c)> / sigma_c / tau ),
    so softmax over all S x C entries has exactly the fitted head's class marginal, split within each
    class by a tempered softmax over the projections (tau: `subclass_temperature`);
  - the loss is T^2 KL(softmax(Z_t / T) || softmax(Z_s / T)) (`hinton_kd`), with optional CE on the
    student's class logits logsumexp_s Z_s(c, s) (the paper's runs use none).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from distill.losses.kd import hinton_kd
from distill.losses.reduction import upcast


class SubclassProjection(NamedTuple):
    """Everything `pseudo_subclass_logits` needs (float tensors, stored by the method as buffers).

    weight (C, D), bias (C,): the class head; projector (D, D): onto its null space; means (C, D);
    directions (C, S, D); scales (C,): the std of each class's coordinates.
    """

    weight: Tensor
    bias: Tensor
    projector: Tensor
    means: Tensor
    directions: Tensor
    scales: Tensor


def fit_logistic_head(x: Tensor, y: Tensor, num_classes: int, *, l2: float = 1e-3,
                      steps: int = 100) -> tuple[Tensor, Tensor]:
    """(W (C, D), b (C,)) minimising mean CE(W x + b, y) + l2 ||W||^2, by L-BFGS in float64 from zero."""
    x, y = x.double(), y.long()
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight.T + bias, y) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def null_space_projector(weight: Tensor, rtol: float = 1e-6) -> Tensor:
    """(D, D) orthogonal projector onto the null space of `weight` (C, D): I - V V^T over the right singular
    vectors V of the singular values above rtol * the largest. A softmax head is shift-invariant, so its
    rows nearly sum to zero and one singular value is ~0: a plain pseudo-inverse would amplify it."""
    _, sv, vh = torch.linalg.svd(weight.double(), full_matrices=False)
    kept = vh[sv > rtol * sv.max()]
    return torch.eye(weight.shape[1], dtype=torch.float64) - kept.T @ kept


def random_rotation(size: int, generator: torch.Generator) -> Tensor:
    """A (size, size) random orthogonal matrix (QR of a Gaussian, signs fixed so it is uniform)."""
    q, r = torch.linalg.qr(torch.randn(size, size, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(size, dtype=q.dtype))


def class_directions(centred: Tensor, subclasses: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Rotated top-`subclasses` principal directions (S, D) of one class's projected, centred rows (n, D)
    (zero rows beyond its rank), and the std of the rows' coordinates along them."""
    directions = torch.zeros(subclasses, centred.shape[1], dtype=torch.float64)
    if len(centred) > 1:
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        keep = min(subclasses, vh.shape[0])
        directions[:keep] = vh[:keep]
    directions = random_rotation(subclasses, generator) @ directions
    scale = (centred @ directions.T).std() if len(centred) > 1 else torch.tensor(1.0, dtype=torch.float64)
    return directions, scale.clamp_min(1e-12)


def fit_subclass_projection(x: Tensor, y: Tensor, num_classes: int, *, subclasses: int, l2: float = 1e-3,
                            seed: int = 0) -> SubclassProjection:
    """Fit the head, its null-space projector and every class's subclass directions on teacher embeddings
    x (N, D) with labels y (N,). A class without examples keeps zero directions (uniform split)."""
    weight, bias = fit_logistic_head(x, y, num_classes, l2=l2)
    projector = null_space_projector(weight)
    generator = torch.Generator().manual_seed(seed)
    means, directions, scales = [], [], []
    for c in range(num_classes):
        rows = x.double()[y == c]
        mean = rows.mean(0) if len(rows) else torch.zeros(x.shape[1], dtype=torch.float64)
        d, s = class_directions((rows - mean) @ projector, subclasses, generator)
        means.append(mean), directions.append(d), scales.append(s)
    fitted = (weight, bias, projector, torch.stack(means), torch.stack(directions), torch.stack(scales))
    return SubclassProjection(*(t.float() for t in fitted))


def pseudo_subclass_logits(embeddings: Tensor, projection: SubclassProjection, *, subclass_temperature: float = 1.0
                           ) -> Tensor:
    """Teacher embeddings (B, D) -> (B, C * S) pseudo-subclass logits Z(c, s), class-major (c * S + s)."""
    p = projection
    t = upcast(embeddings)
    class_logits = t @ p.weight.T.to(t) + p.bias.to(t)                       # (B, C)
    centred = (t[:, None, :] - p.means.to(t)[None]) @ p.projector.to(t)      # (B, C, D)
    coords = torch.einsum("bcd,csd->bcs", centred, p.directions.to(t)) / p.scales.to(t)[None, :, None]
    within = (coords / subclass_temperature).log_softmax(-1)                 # (B, C, S)
    return (class_logits[:, :, None] + within).flatten(1)


def class_logits(subclass_logits: Tensor, num_classes: int) -> Tensor:
    """(B, C * S) class-major pseudo-subclass logits -> (B, C) class logits, logsumexp over each class's subclasses."""
    return subclass_logits.unflatten(-1, (num_classes, -1)).logsumexp(-1)


def lelp_loss(student_logits: Tensor, teacher_logits: Tensor, *, temperature: float = 1.0) -> Tensor:
    """T^2 KL(softmax(Z_t / T) || softmax(Z_s / T)) over the (B, C * S) pseudo-subclass logits (Hinton's form)."""
    return hinton_kd(student_logits, teacher_logits, temperature=temperature)
