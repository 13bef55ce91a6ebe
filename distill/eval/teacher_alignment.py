"""How close a student's sentence embeddings are to its teacher's on held-out texts (the per-epoch figure of
an embedding run; the transfer / retrieval suites of distill.eval.embeddings run once at the end)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def similarity_pearson(student: Tensor, teacher: Tensor) -> float:
    """Pearson correlation between the two models' pairwise cosine similarities over the N texts
    (the N (N - 1) / 2 off-diagonal pairs): comparable when the widths differ. 0 for N < 3."""
    n = student.shape[0]
    if n < 3:
        return 0.0
    upper = torch.triu_indices(n, n, offset=1)
    s, t = (F.normalize(x.double(), dim=1) for x in (student, teacher))
    a, b = (s @ s.T)[upper[0], upper[1]], (t @ t.T)[upper[0], upper[1]]
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12))


def alignment_metrics(student: Tensor, teacher: Tensor) -> dict[str, float]:
    """{"teacher_cosine": mean cos(s_i, t_i), "teacher_l2": mean ||s_i - t_i||^2 (both only at the teacher's
    width), "similarity_pearson"} for (N, D_s) student and (N, D_t) teacher embeddings of the same texts."""
    out = {"similarity_pearson": similarity_pearson(student, teacher)}
    if student.shape == teacher.shape and len(student):
        s, t = student.double(), teacher.double()
        out["teacher_cosine"] = float(F.cosine_similarity(s, t, dim=1).mean())
        out["teacher_l2"] = float(((s - t) ** 2).sum(1).mean())
    return out
