"""LEAF: the student's embedding regressed onto the teacher's (squared l2, optionally cosine)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from distill.config import option
from distill.losses import embedding_cosine, embedding_mse
from distill.methods.base import METHODS, MethodConfig
from distill.methods.embedding_base import EmbeddingMethod


@dataclass(kw_only=True)
class LEAFConfig(MethodConfig):
    name: str = "leaf"
    l2_weight: float = option(1.0, min=0.0, help="weight of ||y - y_teacher||^2 per text (LEAF's loss)")
    cosine_weight: float = option(0.0, min=0.0, help="weight of 1 - cos(y, y_teacher) (not in LEAF; 0 keeps it off)")


@METHODS.register("leaf", config=LEAFConfig)
class LEAF(EmbeddingMethod):
    """LEAF: l2_weight * ||y_s - y_t||^2 (+ cosine_weight * (1 - cos)) on sentence batches ("LEAF: Knowledge Distillation of Text Embedding Models with Teacher-Aligned Representations", 2025).

    The student is y = Norm(Linear(MeanPool(Transformer(x)))) at the teacher's width (the projection
    is part of the student and exported with it), so its embeddings can be compared with the teacher's
    (asymmetric retrieval). Black-box: only the teacher's output embeddings are read; works from a store.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.require_teacher_width()

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        student, teacher = self.embedding_pair(batch)
        l2, cosine = embedding_mse(student, teacher), embedding_cosine(student, teacher)
        return {"loss": self.cfg.l2_weight * l2 + self.cfg.cosine_weight * cosine, "l2": l2, "cosine": cosine}
