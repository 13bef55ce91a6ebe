"""Cross-entropy only: the no-distillation baseline (also used to train teachers)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from distill.methods.base import METHODS, Method, MethodConfig


@dataclass(kw_only=True)
class CEConfig(MethodConfig):
    name: str = "ce"


@METHODS.register("ce", config=CEConfig)
class CrossEntropy(Method):
    """Cross-entropy on the labels only (no teacher): the baseline every method must beat."""

    needs_teacher = False
    baseline = True

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        ce = self.cross_entropy(self.student(batch["x"]), batch["y"])
        return {"loss": ce, "ce": ce}
