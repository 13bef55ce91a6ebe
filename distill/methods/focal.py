"""Focal loss as a training objective (teacher stages, e.g. the KD-OCT teacher recipe)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor

from distill.config import option
from distill.losses import focal_loss
from distill.methods.base import METHODS, Method, MethodConfig


@dataclass(kw_only=True)
class FocalConfig(MethodConfig):
    name: str = "focal"
    gamma: float = option(2.0, min=0.0, help="focusing parameter (0 = cross-entropy)")
    class_weights: Optional[list[float]] = option(None, help="alpha per class; 'balanced' weights: n / (C * n_c)")
    balanced: bool = option(False, help="use sklearn-style balanced class weights from the training labels")


@METHODS.register("focal", config=FocalConfig)
class Focal(Method):
    """Focal loss on the labels, no teacher ("Focal Loss for Dense Object Detection", Lin et al., 2017); KD-OCT trains its teacher with it."""

    needs_teacher = False

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        weights = None
        if self.cfg.class_weights is not None:
            weights = torch.tensor(self.cfg.class_weights, dtype=torch.float32)
        elif self.cfg.balanced and self.ctx.train_labels is not None:
            counts = torch.bincount(self.ctx.train_labels, minlength=self.ctx.num_classes).float().clamp_min(1)
            weights = counts.sum() / (len(counts) * counts)
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        loss = focal_loss(self.student(batch["x"]), batch["y"], gamma=self.cfg.gamma, class_weights=self.class_weights)
        return {"loss": loss, "focal": loss}
