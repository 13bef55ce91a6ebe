"""Margin-MSE on (query, positive, negative) triples."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor

from distill.config import option
from distill.losses import margin_mse
from distill.methods.base import METHODS, MethodConfig
from distill.methods.embedding_base import EmbeddingMethod


@dataclass(kw_only=True)
class MarginMSEConfig(MethodConfig):
    name: str = "margin_mse"
    similarity: Literal["dot", "cosine"] = option("dot", help="how both models score (query, passage): the paper's "
                                                  "bi-encoder students score by dot product")


@METHODS.register("margin_mse", config=MarginMSEConfig)
class MarginMSE(EmbeddingMethod):
    """Margin-MSE: mean ((s(q,p+) - s(q,p-)) - (t(q,p+) - t(q,p-)))^2 on triples ("Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge Distillation", 2020).

    Batches are triples {"query", "positive", "negative"}. The teacher's scores are the similarities
    of its own embeddings (the paper's teachers are cross-encoders; a cross-encoder source is not
    built). Only margins are matched, so the two models' score scales may differ.
    """

    batch_format = "triples"

    def score(self, queries: Tensor, passages: Tensor) -> Tensor:
        if self.cfg.similarity == "cosine":
            queries, passages = (x / x.norm(dim=-1, keepdim=True).clamp_min(1e-8) for x in (queries, passages))
        return (queries * passages).sum(-1)

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        tq, tp, tn = (self.teacher_embeddings(batch[k]) for k in ("query", "positive", "negative"))
        sq, sp, sn = (self.embed(batch[k]) for k in ("query", "positive", "negative"))
        loss = margin_mse(self.score(sq, sp), self.score(sq, sn), self.score(tq, tp), self.score(tq, tn))
        return {"loss": loss, "margin_mse": loss}
