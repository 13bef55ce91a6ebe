"""Several teachers: per-teacher KL terms, weighted per sample (CA-MKD) or by fixed weights (AVER-MKD)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.losses.divergences import kl_terms
from distill.losses.reduction import upcast


def teacher_weights(teacher_logits: list[Tensor], targets: Tensor | None, mode: str,
                    fixed: list[float] | None = None) -> Tensor:
    """(K, B) per-sample teacher weights, summing to 1 over the K teachers.

    mode "average": the fixed weights normalised to sum 1 (uniform if None), for every sample.
    mode "confidence" (CA-MKD, Zhang et al., "Confidence-Aware Multi-Teacher Knowledge
    Distillation", ICASSP 2022, official code): w_kb = (1 - softmax_k(CE_kb)) / (K - 1), where
    CE_kb is teacher k's cross-entropy on sample b's label: a teacher gets more weight the
    lower its loss relative to the others. With K = 2 this equals softmax_k(-CE_kb); for K >= 3
    it does not (it is flatter). One teacher gets weight 1.
    """
    k, b = len(teacher_logits), teacher_logits[0].shape[0]
    device = teacher_logits[0].device
    if mode == "average":
        w = torch.tensor(fixed if fixed else [1.0] * k, dtype=torch.float32, device=device)
        return (w / w.sum())[:, None].expand(k, b)
    if mode != "confidence":
        raise ValueError(f"mode={mode!r}: expected 'average' or 'confidence'")
    if targets is None:
        raise ValueError("confidence weighting needs the labels")
    if k == 1:
        return torch.ones(1, b, device=device)
    ce = torch.stack([F.cross_entropy(upcast(t), targets, reduction="none") for t in teacher_logits])
    return (1.0 - F.softmax(ce, dim=0)) / (k - 1)


def multi_teacher_kd(student_logits: Tensor, teacher_logits: list[Tensor], *, weights: Tensor,
                     temperature: float = 4.0, average_over_teachers: bool = False) -> Tensor:
    """T^2 / B * sum_k sum_b w_kb KL(softmax(t_k,b / T) || softmax(s_b / T)), divided by K when
    `average_over_teachers` (CA-MKD's official normalisation, 1 / (B K)).

    Each teacher contributes its own KL term (distributions are not mixed). AVER-MKD is mode
    "average" with uniform weights: the mean of the teachers' KD losses. Shapes: student (B, C),
    each teacher (B, C), weights (K, B). Returns a scalar.
    """
    log_s = F.log_softmax(upcast(student_logits) / temperature, dim=1)
    per_teacher = torch.stack([kl_terms(F.log_softmax(upcast(t) / temperature, dim=1), log_s) for t in teacher_logits])
    total = (weights.to(per_teacher.dtype) * per_teacher).sum() / student_logits.shape[0]
    if average_over_teachers:
        total = total / len(teacher_logits)
    return total * temperature ** 2
