"""DeAR's pointwise-stage reranker distillation: CE + RankNet on the labels, plus T^2 listwise KL to the teacher.

Paper: "DeAR: Dual-Stage Document Reranking with Reasoning Agents via LLM Distillation", Abdallah,
Mozafari, Piryani, Jatowt, EMNLP Findings 2025 (arXiv:2508.16998). Following its official code
(DataScienceUIBK/DeAR-Reranking, loss "ranknet_binary_softmax_ce"), for each query's candidate list with
the positive first:

    main  = beta * RankNet(s, y) + (1 - beta) * CE(softmax(s), 0)        y = (1, 0, ..., 0), soft targets
    total = (1 - alpha) * main + alpha * T^2 * KL(softmax(t / T) || softmax(s / T))

with beta = 0.5 in that loss, and T = 2, alpha = 0.1 in its training script (whose default loss_type,
"softmax_ce", is the beta = 0 case: CE + KL only). RankNet uses the code's soft targets
sigmoid(y_i - y_j), so a positive/negative pair targets sigmoid(1) = 0.73 and a negative/negative pair
0.5 (not Burges' 1 and 1/2).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from distill.losses.ranking import candidate_mask, listwise_kl, masked_log_softmax, ranknet
from distill.losses.reduction import reduce_positions, upcast


class DeARLoss(NamedTuple):
    total: Tensor
    ce: Tensor
    ranknet: Tensor
    kl: Tensor


def dear_loss(student_scores: Tensor, teacher_scores: Tensor, *, alpha: float = 0.1, beta: float = 0.5,
              temperature: float = 2.0, mask: Tensor | None = None) -> DeARLoss:
    """DeAR's loss on (B, N) candidate scores whose column 0 is the positive.

    Args:
        student_scores: (B, N) student scores.
        teacher_scores: (B, N) teacher scores (no gradient).
        alpha: weight of the T^2 KL term (1 - alpha on CE + RankNet).
        beta: RankNet's share of the label term (1 - beta on CE).
        temperature: KL temperature T; the KL is multiplied by T^2 as in the paper's code.
        mask: optional bool (B, N) of valid candidates (column 0 must be valid in counted rows).

    Returns:
        DeARLoss(total, ce, ranknet, kl): scalars, each a mean over rows with a valid candidate.
    """
    valid = candidate_mask(student_scores, mask)
    labels = torch.zeros_like(upcast(student_scores))
    labels[:, 0] = 1
    pair_loss = ranknet(student_scores, labels, soft=True, mask=valid)
    ce = reduce_positions(-masked_log_softmax(student_scores, valid)[:, 0], valid[:, 0])
    kl = listwise_kl(student_scores, teacher_scores, temperature=temperature, mask=valid) * temperature ** 2
    main = beta * pair_loss + (1 - beta) * ce
    return DeARLoss((1 - alpha) * main + alpha * kl, ce, pair_loss, kl)
