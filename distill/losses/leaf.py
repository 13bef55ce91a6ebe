"""Embedding alignment (LEAF): the student's embedding regressed onto the teacher's, row by row.

Paper: "LEAF: Knowledge Distillation of Text Embedding Models with Teacher-Aligned Representations",
Vujanic & Rueckstiess, 2025 (arXiv:2509.12539). A leaf model computes y = Norm(Linear(MeanPool(
Transformer(x)))) and is trained on the l2 approximation error to the teacher's embedding y_hat of the
same text; no labels, no negatives. Summaries of the paper write the loss as ||y - y_hat||_2^2; that
the published form is squared was not checked against the paper's text here, so `embedding_mse` is the
squared form and the square root is not offered.

Conventions: inputs (B, D) of the same width (project the student first), computed in at least
float32; one value per row, reduced over the rows where `mask` (B,) is true by
`distill.losses.reduction.reduce_positions` ("mean", 0 when every row is masked; "sum"; "none").
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from distill.losses.reduction import reduce_positions, upcast


def check_pair(student: Tensor, teacher: Tensor) -> None:
    if student.shape != teacher.shape or student.dim() != 2:
        raise ValueError(f"embeddings must both be (B, D): student {tuple(student.shape)}, "
                         f"teacher {tuple(teacher.shape)}")


def embedding_mse(student: Tensor, teacher: Tensor, *, mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Squared Euclidean error per row, ||s_b - t_b||_2^2 (summed over the D coordinates: D times torch's
    `mse_loss`, which also averages over them), then the mean over valid rows (LEAF's L_i).

    Args:
        student: (B, D) student embeddings (already projected to the teacher's width).
        teacher: (B, D) teacher embeddings (no gradient needed).
        mask: optional bool (B,); only rows where it is true count.
        reduction: "mean" over valid rows (0 if none), "sum", or "none" (per row, (B,)).

    Returns:
        A scalar (or (B,) for "none"); 0 exactly when the embeddings are equal, never negative.
    """
    check_pair(student, teacher)
    per_row = (upcast(student) - upcast(teacher)).pow(2).sum(-1)
    return reduce_positions(per_row, mask, reduction)


def embedding_cosine(student: Tensor, teacher: Tensor, *, mask: Tensor | None = None, reduction: str = "mean",
                     eps: float = 1e-8) -> Tensor:
    """Cosine distance per row, 1 - cos(s_b, t_b) in [0, 2], then the mean over valid rows.

    Scale-free: only the direction of the student's embedding is pulled to the teacher's (what cosine
    retrieval reads). Same shapes and reductions as `embedding_mse`; 0 for equal (or positively scaled)
    embeddings.
    """
    check_pair(student, teacher)
    per_row = 1 - F.cosine_similarity(upcast(student), upcast(teacher), dim=-1, eps=eps)
    return reduce_positions(per_row, mask, reduction)
