"""In-batch similarity KD (CompRess-style): each text's softmax over its in-batch neighbours, matched by KL."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor

from distill.config import option
from distill.losses import embedding_mse, similarity_kd
from distill.methods.base import METHODS, MethodConfig
from distill.methods.embedding_base import EmbeddingMethod


@dataclass(kw_only=True)
class SimKDConfig(MethodConfig):
    name: str = "sim_kd"
    temperature: float = option(0.05, min=0.0, min_exclusive=True, help="softmax temperature of the similarity rows "
                                "(ours; tune it: it sets how many neighbours count)")
    similarity: Literal["cosine", "dot"] = option("cosine")
    kd_weight: float = option(1.0, min=0.0, help="weight of the in-batch similarity KL")
    l2_weight: float = option(0.0, min=0.0, help="weight of LEAF's ||y_s - y_t||^2 (needs the teacher's width)")


@METHODS.register("sim_kd", config=SimKDConfig)
class SimKD(EmbeddingMethod):
    """In-batch similarity KD: KL(softmax(sim_t / T) || softmax(sim_s / T)) per text over the other texts of the batch ("CompRess: Self-Supervised Learning by Compressing Representations", NeurIPS 2020).

    The in-batch form of CompRess (the batch is the anchor set, no memory bank; the diagonal left out).
    Only similarities are compared, so the student may be narrower than the teacher (no projection)
    unless `l2_weight` adds LEAF's alignment term. Larger batches give longer rows.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.cfg.l2_weight:
            self.require_teacher_width()

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        student, teacher = self.embedding_pair(batch)
        kd = similarity_kd(student, teacher, temperature=self.cfg.temperature, similarity=self.cfg.similarity)
        parts = {"sim_kd": kd}
        loss = self.cfg.kd_weight * kd
        if self.cfg.l2_weight:
            parts["l2"] = embedding_mse(student, teacher)
            loss = loss + self.cfg.l2_weight * parts["l2"]
        return {"loss": loss, **parts}
