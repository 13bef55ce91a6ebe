"""In-batch similarity distillation: the student reproduces, for every example, the teacher's
distribution over which other examples of the batch are its neighbours.

Paper: "CompRess: Self-Supervised Learning by Compressing Representations", Abbasi Koohpayegani,
Tejankar, Pirsiavash, NeurIPS 2020. There each query's cosine similarities to a memory bank of anchor
embeddings are turned into softmax(sim / tau) and the student minimises KL(p_teacher || p_student). Here
the anchors are the other examples of the batch (no memory bank), each model compares against its own
embeddings of them (CompRess's "2q" form), and the self-similarity (the diagonal) is left out: it is 1
for both models and would only dilute the rows.

Because only similarities are compared, the student's width may differ from the teacher's.
"""
from __future__ import annotations

import torch
from torch import Tensor

from distill.losses.ranking import listwise_kl, similarity_matrix


def similarity_kd(student: Tensor, teacher: Tensor, *, temperature: float = 0.05, mask: Tensor | None = None,
                  similarity: str = "cosine", reduction: str = "mean") -> Tensor:
    """mean_i KL(softmax_j(t_ij / T) || softmax_j(s_ij / T)) over j != i, with s = sim(student, student),
    t = sim(teacher, teacher).

    Args:
        student: (B, D_s) student embeddings.
        teacher: (B, D_t) teacher embeddings (D_t may differ from D_s).
        temperature: softmax temperature of both similarity rows. No T^2.
        mask: optional bool (B,) of valid rows; an invalid row is neither a query nor an anchor.
        similarity: "cosine" (CompRess) or "dot".
        reduction: "mean" over valid rows with at least one valid anchor, "sum", or "none" ((B,)).

    Returns:
        A scalar (or (B,)); 0 when the two similarity matrices are equal, never negative.
    """
    rows = torch.ones(len(student), dtype=torch.bool, device=student.device) if mask is None else mask.bool()
    anchors = rows[:, None] & rows[None, :] & ~torch.eye(len(student), dtype=torch.bool, device=student.device)
    return listwise_kl(similarity_matrix(student, student, similarity), similarity_matrix(teacher, teacher, similarity),
                       temperature=temperature, mask=anchors, reduction=reduction)
