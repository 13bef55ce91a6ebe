"""Contrastive distillation with teacher-scored in-batch negatives (TCT-ColBERT).

Paper: "In-Batch Negatives for Knowledge Distillation with Tightly-Coupled Teachers for Dense
Retrieval", Lin, Yang, Lin, RepL4NLP 2021. For a batch of (query, positive passage) pairs every query
is scored against every passage of the batch (its positive and the others' positives as negatives), by
the student and by the teacher; the student is trained on a weighted sum of cross-entropy on the
labelled positive and KL from the teacher's softmax over the same in-batch scores to the student's:

    ce_weight * CE(softmax(S_s[i]), i)  +  kd_weight * KL(softmax(S_t[i]) || softmax(S_s[i])),   S = sim / tau

so the negatives are weighted by how relevant the teacher finds them instead of all counting as wrong.
The paper's teacher is ColBERT (MaxSim scores); here it is a bi-encoder teacher whose scores are the
similarities of its own embeddings. The weights and tau are the method's (`methods/contrastive_kd.py`);
the paper's values were not checked here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.losses.ranking import listwise_kl, similarity_matrix


def in_batch_scores(queries: Tensor, passages: Tensor, *, similarity: str = "cosine",
                    temperature: float = 1.0) -> Tensor:
    """(B, D) queries x (B, D) passages -> (B, B) scores sim(q_i, p_j) / temperature; the positives on the diagonal."""
    return similarity_matrix(queries, passages, similarity) / temperature


def in_batch_ce(student_scores: Tensor) -> Tensor:
    """InfoNCE over the batch: mean_i -log softmax(S[i])_i, (B, B) scores with the positives on the diagonal."""
    return F.cross_entropy(student_scores, torch.arange(len(student_scores), device=student_scores.device))


def in_batch_kd(student_scores: Tensor, teacher_scores: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """mean_i KL(softmax(T[i]) || softmax(S[i])) over each query's in-batch passages ((B, B) scores, already
    divided by the temperature). `mask` (B, B) can drop candidates (e.g. duplicates of a positive)."""
    return listwise_kl(student_scores, teacher_scores, mask=mask)
