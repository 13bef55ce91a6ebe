"""LELP: few-class KD through pseudo-subclasses projected out of the teacher's embeddings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill.config import option
from distill.errors import ConfigError
from distill.losses.lelp import (SubclassProjection, class_logits, fit_subclass_projection, lelp_loss,
                                 pseudo_subclass_logits)
from distill.methods.base import METHODS, MethodConfig
from distill.methods.embedding_base import EmbeddingMethod


@dataclass(kw_only=True)
class LELPConfig(MethodConfig):
    name: str = "lelp"
    subclasses: int = option(4, min=1, help="pseudo-subclasses S per class (ours)")
    subclass_temperature: float = option(1.0, min=0.0, min_exclusive=True,
                                         help="temperature of the within-class split over the standardised projections")
    temperature: float = option(1.0, min=0.0, min_exclusive=True, help="KD temperature T of the S x C logits (T^2 KL)")
    kd_weight: float = option(1.0, min=0.0)
    ce_weight: float = option(0.0, min=0.0, help="CE of the student's class logits on the labels (the paper: 0)")
    l2: float = option(1e-3, min=0.0, help="L2 strength of the teacher's fitted logistic-regression head")
    seed: int = option(0, help="seed of the random rotations of the subclass directions")


@METHODS.register("lelp", config=LELPConfig)
class LELP(EmbeddingMethod):
    """LELP: T^2 KL between the student's and the teacher's S x C pseudo-subclass distributions, read off linear projections of the teacher's embeddings ("Linear Projections of Teacher Embeddings for Few-Class Distillation", 2024).

    Before training the teacher's embeddings of `ctx.labelled_batches` fit a class head and each class's
    subclass directions (`distill.losses.lelp`); the student gets a linear head to S x C outputs (the
    method's, dropped at export). Sentence batches with a "label" field; works from a store.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.ctx.labelled_batches is None or self.ctx.num_classes < 2:
            raise ConfigError("method.name = 'lelp' needs labelled training texts with at least 2 classes")
        projection = self.fit_projection()
        for name, value in projection._asdict().items():
            self.register_buffer(name, value)
        self.head = nn.Linear(self.student.dim, self.ctx.num_classes * self.cfg.subclasses)

    @torch.no_grad()
    def fit_projection(self) -> SubclassProjection:
        embeddings, labels = [], []
        for batch in self.ctx.labelled_batches():
            embeddings.append(self.teacher_embeddings(batch).float().cpu())
            labels.append(batch["label"].cpu())
        return fit_subclass_projection(torch.cat(embeddings), torch.cat(labels), self.ctx.num_classes,
                                       subclasses=self.cfg.subclasses, l2=self.cfg.l2, seed=self.cfg.seed)

    @property
    def projection(self) -> SubclassProjection:
        return SubclassProjection(*(getattr(self, name) for name in SubclassProjection._fields))

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        teacher = pseudo_subclass_logits(self.teacher_embeddings(batch), self.projection,
                                         subclass_temperature=self.cfg.subclass_temperature)
        student = self.head(self.embed(batch))
        kd = lelp_loss(student, teacher, temperature=self.cfg.temperature)
        parts = {"lelp": kd}
        loss = self.cfg.kd_weight * kd
        if self.cfg.ce_weight:
            parts["ce"] = F.cross_entropy(class_logits(student.float(), self.ctx.num_classes), batch["label"])
            loss = loss + self.cfg.ce_weight * parts["ce"]
        return {"loss": loss, **parts}
