"""DeAR-style listwise KD on candidate lists: CE + RankNet on the labels, T^2 KL to the teacher's list distribution."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.config import option
from distill.losses import dear_loss, similarity_matrix
from distill.methods.base import METHODS, MethodConfig
from distill.methods.embedding_base import EmbeddingMethod


@dataclass(kw_only=True)
class ListwiseKDConfig(MethodConfig):
    name: str = "listwise_kd"
    alpha: float = option(0.1, min=0.0, max=1.0, help="weight of the T^2 KL term (DeAR's training script: 0.1)")
    beta: float = option(0.5, min=0.0, max=1.0, help="RankNet's share of the label term, CE the rest (DeAR: 0.5)")
    temperature: float = option(2.0, min=0.0, min_exclusive=True, help="KL temperature T (DeAR: 2)")
    scale: float = option(20.0, min=0.0, min_exclusive=True, help="scores = scale * similarity for both models (ours: "
                          "DeAR's scores are reranker logits, a bi-encoder's cosines need scaling)")
    similarity: Literal["cosine", "dot"] = option("cosine")


@METHODS.register("listwise_kd", config=ListwiseKDConfig)
class ListwiseKD(EmbeddingMethod):
    """DeAR listwise KD: (1 - alpha) * (beta * RankNet + (1 - beta) * CE) + alpha * T^2 KL over each query's candidates ("DeAR: Dual-Stage Document Reranking with Reasoning Agents via LLM Distillation", 2025).

    Batches are lists {"query" (B), "candidates" (B * N, positive first), optional "candidate_mask"}.
    Scores are scaled similarities of each model's own embeddings; the paper distils a cross-encoder
    reranker (teacher and student score (query, passage) jointly), which is not built here.
    """

    batch_format = "lists"

    def scores(self, queries: Tensor, candidates: Tensor) -> Tensor:
        """(B, D) x (B * N, D) -> (B, N): each query against its own N candidates."""
        grouped = candidates.unflatten(0, (len(queries), -1))
        if self.cfg.similarity == "cosine":
            queries, grouped = F.normalize(queries, dim=-1), F.normalize(grouped, dim=-1)
        return self.cfg.scale * torch.einsum("bd,bnd->bn", queries.float(), grouped.float())

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        tq, tc = self.teacher_embeddings(batch["query"]), self.teacher_embeddings(batch["candidates"])
        sq, sc = self.embed(batch["query"]), self.embed(batch["candidates"])
        out = dear_loss(self.scores(sq, sc), self.scores(tq, tc), alpha=self.cfg.alpha, beta=self.cfg.beta,
                        temperature=self.cfg.temperature, mask=batch.get("candidate_mask"))
        return {"loss": out.total, "ce": out.ce, "ranknet": out.ranknet, "kl": out.kl}
