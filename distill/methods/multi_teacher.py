"""Distillation from several teachers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

from torch import Tensor

from distill.config import option
from distill.errors import ConfigError
from distill.losses import multi_teacher_kd, teacher_weights
from distill.methods.base import METHODS, Method, MethodConfig


@dataclass(kw_only=True)
class MultiTeacherConfig(MethodConfig):
    name: str = "multi_teacher"
    mode: Literal["average", "confidence"] = option("average", help="fixed weights, or per-sample confidence weighting (CA-MKD)")
    weights: Optional[list[float]] = option(None, help="per-teacher weights for mode average (default: equal)")
    temperature: float = option(4.0, min=0.0, min_exclusive=True)
    kd_weight: float = option(0.9, min=0.0)
    ce_weight: float = option(0.1, min=0.0)


@METHODS.register("multi_teacher", config=MultiTeacherConfig)
class MultiTeacherKD(Method):
    """KD from several teachers, one KL term each, weighted by fixed weights or per sample by confidence (CA-MKD, ICASSP 2022).

    The teachers are `teacher` plus the recipe's `extra_teachers`. mode "confidence" follows
    CA-MKD's official code: w_kb = (1 - softmax_k(CE_kb)) / (K - 1) and
    L_kd = T^2 / (B K) sum_kb w_kb KL(p_k^T || p_s^T); mode "average" is
    T^2 / B sum_kb w_k KL(p_k^T || p_s^T) with the fixed weights normalised to sum 1 (uniform:
    the mean of the per-teacher KD losses, AVER-MKD). Loss = ce_weight CE + kd_weight L_kd.
    """

    needs_live_teacher = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.teachers = [self.teacher, *self.ctx.extra_teachers]
        if self.cfg.weights is not None and len(self.cfg.weights) != len(self.teachers):
            raise ConfigError(f"method.weights has {len(self.cfg.weights)} entries for {len(self.teachers)} teachers")

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        teacher_logits = [t(batch["x"]) for t in self.teachers]
        s = self.student(batch["x"])
        w = teacher_weights(teacher_logits, batch["y"], self.cfg.mode, self.cfg.weights)
        ce = self.cross_entropy(s, batch["y"])
        kd = multi_teacher_kd(s, teacher_logits, weights=w, temperature=self.cfg.temperature,
                              average_over_teachers=self.cfg.mode == "confidence")
        parts = {"ce": ce, "kd": kd, **{f"w_teacher{k + 1}": w[k].mean() for k in range(len(self.teachers))}}
        return {"loss": self.cfg.ce_weight * ce + self.cfg.kd_weight * kd, **parts}
