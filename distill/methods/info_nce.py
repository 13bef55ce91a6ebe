"""In-batch InfoNCE on (query, positive) pairs: the embedding task's teacher-free baseline."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor

from distill.config import option
from distill.losses import in_batch_ce, in_batch_scores
from distill.methods.base import METHODS, MethodConfig
from distill.methods.embedding_base import EmbeddingMethod


@dataclass(kw_only=True)
class InfoNCEConfig(MethodConfig):
    name: str = "info_nce"
    temperature: float = option(0.05, min=0.0, min_exclusive=True, help="scores are sim / temperature (20x cosine, "
                                "sentence-transformers' MultipleNegativesRankingLoss scale)")
    similarity: Literal["cosine", "dot"] = option("cosine")


@METHODS.register("info_nce", config=InfoNCEConfig)
class InfoNCE(EmbeddingMethod):
    """In-batch InfoNCE, no teacher: mean_i -log softmax_j(sim(q_i, p_j) / T)_i over the batch's positives ("Representation Learning with Contrastive Predictive Coding", 2018).

    The label-only reference of the embedding task (`baseline: true`): the student fine-tuned on the
    same pairs with the other pairs' positives as negatives (sentence-transformers'
    MultipleNegativesRankingLoss), so a distillation method can be compared with plain contrastive
    training of the same init.
    """

    batch_format = "pairs"
    needs_teacher = False
    baseline = True

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        query, positive = self.embed(batch["query"]), self.embed(batch["positive"])
        loss = in_batch_ce(in_batch_scores(query, positive, similarity=self.cfg.similarity,
                                           temperature=self.cfg.temperature))
        return {"loss": loss, "info_nce": loss}
