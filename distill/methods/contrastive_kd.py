"""Contrastive KD with teacher-scored in-batch negatives (TCT-ColBERT) on (query, positive) pairs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor

from distill.config import option
from distill.losses import in_batch_ce, in_batch_kd, in_batch_scores
from distill.methods.base import METHODS, MethodConfig
from distill.methods.embedding_base import EmbeddingMethod


@dataclass(kw_only=True)
class ContrastiveKDConfig(MethodConfig):
    name: str = "contrastive_kd"
    temperature: float = option(0.05, min=0.0, min_exclusive=True, help="scores are sim / temperature for both "
                                "models (ours: 20x cosine, sentence-transformers' usual scale)")
    similarity: Literal["cosine", "dot"] = option("cosine")
    ce_weight: float = option(0.1, min=0.0, help="weight of InfoNCE on the labelled positives (gamma; ours)")
    kd_weight: float = option(0.9, min=0.0, help="weight of KL to the teacher's in-batch "
                              "distribution (1 - gamma; ours)")


@METHODS.register("contrastive_kd", config=ContrastiveKDConfig)
class ContrastiveKD(EmbeddingMethod):
    """TCT-style contrastive KD: ce_weight * InfoNCE + kd_weight * KL(teacher || student) over each query's in-batch passages ("In-Batch Negatives for Knowledge Distillation with Tightly-Coupled Teachers for Dense Retrieval", 2021).

    Batches are pairs {"query", "positive"}; every query is scored against every positive of the
    batch by both models (the teacher through its own embeddings), so the other pairs' passages are
    negatives weighted by the teacher. The weights and temperature are ours, not the paper's.
    """

    batch_format = "pairs"

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        with_teacher = [self.teacher_embeddings(batch[k]) for k in ("query", "positive")]  # teacher first
        query, passage = self.embed(batch["query"]), self.embed(batch["positive"])
        scores = in_batch_scores(query, passage, similarity=self.cfg.similarity, temperature=self.cfg.temperature)
        teacher = in_batch_scores(*with_teacher, similarity=self.cfg.similarity, temperature=self.cfg.temperature)
        ce, kd = in_batch_ce(scores), in_batch_kd(scores, teacher)
        return {"loss": self.cfg.ce_weight * ce + self.cfg.kd_weight * kd, "ce": ce, "kd": kd}
