"""X-Token's partition-free P-KL ("X-Token: Projection-Guided Cross-Tokenizer Knowledge Distillation",
NVIDIA, 2026; official code in NVIDIA-NeMo/RL, `CrossTokenizerDistillationLossFn._compute_p_kl`).

A sparse row-stochastic projection W (Vs x Vt) maps the student's vocabulary onto the teacher's,
built once from the tokenizers' strings (`build_projection` in `distill.models.vocab_map`). Per
aligned chunk c (span of shared text):
  P_c = mean over the chunk's student rows of softmax(z_s / T) @ W, renormalised;
  Q_c = mean over the chunk's teacher rows of log_softmax(z_t / T);
  KL_c = sum_v exp(Q_c,v) (Q_c,v - log(P_c,v + 1e-10)),
then T^2 * mean over chunks. For one-token chunks this is KL(p_t || W^T p_s) per position; with the
same tokenizer and W = I it is the plain forward KL. The official code restricts the teacher
vocabulary to a batch-wide top-8192 subset; this computes the full vocabulary, chunk by chunk.
Shapes: student (n, Vs), teacher (m, Vt), spans (n,) / (m,) in 0..G-1; returns (G,).
"""
from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-10


def project(student_probs: Tensor, projection: Tensor) -> Tensor:
    """(n, Vt) = student_probs (n, Vs) @ projection (Vs, Vt, sparse or dense)."""
    if projection.is_sparse:
        return torch.sparse.mm(projection.t(), student_probs.t()).t()
    return student_probs @ projection


def chunk_mean(rows: Tensor, span: Tensor, n_spans: int) -> Tensor:
    """(G, V) the mean of each span's rows."""
    total = torch.zeros(n_spans, rows.shape[-1], dtype=rows.dtype, device=rows.device).index_add(0, span, rows)
    count = torch.bincount(span, minlength=n_spans).clamp_min(1).to(rows.dtype)
    return total / count[:, None]


def p_kl(student_logits: Tensor, student_span: Tensor, teacher_logits: Tensor, teacher_span: Tensor,
         projection: Tensor, n_spans: int, *, temperature: float = 1.0) -> Tensor:
    """(G,) T^2 * KL(teacher chunk || projected student chunk) (module docstring)."""
    p_s = torch.softmax(student_logits / temperature, dim=-1)
    projected = chunk_mean(project(p_s, projection.to(p_s.dtype)), student_span, n_spans)
    projected = projected / (projected.sum(-1, keepdim=True) + EPS)
    q = chunk_mean(torch.log_softmax(teacher_logits.to(p_s.dtype) / temperature, dim=-1), teacher_span, n_spans)
    return temperature ** 2 * (q.exp() * (q - (projected + EPS).log())).sum(-1)
