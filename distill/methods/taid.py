"""TAID: temporally adaptive interpolated distillation."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from torch import Tensor

from distill.config import option
from distill.losses.registry import divergence_config
from distill.methods.base import METHODS, MethodConfig
from distill.methods.lm_base import LMMethod


@dataclass(kw_only=True)
class TAIDConfig(MethodConfig):
    name: str = "taid"
    t_start: float = option(0.4, min=0.0, max=1.0, help="initial interpolation t")
    t_end: float = option(1.0, min=0.0, max=1.0, help="final t (1 = the teacher)")
    alpha: float = option(5e-4, min=0.0, help="step size of the adaptive increase")
    beta: float = option(0.99, min=0.0, max=1.0, help="momentum of the relative loss change")
    adaptive: bool = option(True, help="false: t grows linearly from t_start to t_end")
    temperature: float = option(1.0, min=0.0, min_exclusive=True)
    ce_weight: float = option(0.0, min=0.0)
    chunk_size: Optional[int] = option(None, min=1)


@METHODS.register("taid", config=TAIDConfig)
class TAID(LMMethod):
    """TAID: KL(softmax((1-t) sg(z_s) + t z_t) || p_s) with t moving from t_start to t_end, faster while the loss falls ("TAID", Shing et al., ICLR 2025).

    After every optimizer step: m <- beta m + (1 - beta) (L_prev - L) / L_prev;
    t <- min(t_end, max(linear(step), t + alpha sigmoid(m) (1 - t))), linear(step) going from
    t_start to t_end over training; the first step only records L. Defaults and rule are the
    official code's. Two deliberate differences: t moves once per optimizer step on the loss
    averaged over micro-batches and ranks (the official code updates on every micro-batch on the
    rank-local loss, so accumulation and data parallelism change its schedule); and L is the KL
    being optimised (the official code feeds its cross-entropy form, KL + H(p_t), whose entropy
    part drifts with t itself). t, the previous loss and m are saved in checkpoints.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.t, self.prev_loss, self.momentum = self.cfg.t_start, None, 0.0

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        student, teacher, labels = self.hidden_states(batch)
        if not len(labels):
            return self.empty(student)
        out = self.fused(student, teacher, labels, divergence=divergence_config("taid", t=self.t),
                         temperature=self.cfg.temperature, kd_weight=1.0, ce_weight=self.cfg.ce_weight,
                         chunk_size=self.cfg.chunk_size)
        parts = {"loss": out.loss, "taid": out.divergence, "t": out.divergence.new_tensor(self.t)}
        if out.ce is not None:
            parts["ce"] = out.ce
        return parts

    def on_step_end(self, step: int, total_steps: int, parts: dict[str, float]) -> None:
        linear = self.cfg.t_start + (self.cfg.t_end - self.cfg.t_start) * step / max(total_steps, 1)
        if not self.cfg.adaptive:
            self.t = min(self.cfg.t_end, linear)
            return
        loss = parts["taid"]
        if self.prev_loss is None:
            self.prev_loss = loss
            return
        change = (self.prev_loss - loss) / (self.prev_loss + 1e-15)
        self.momentum = self.cfg.beta * self.momentum + (1 - self.cfg.beta) * change
        delta = self.cfg.alpha * (1 / (1 + math.exp(-self.momentum))) * (1 - self.t)
        self.t = min(self.cfg.t_end, max(linear, self.t + delta))
        self.prev_loss = loss

    def extra_state(self) -> dict[str, Any]:
        return {"t": self.t, "prev_loss": self.prev_loss, "momentum": self.momentum}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.t = state.get("t", self.cfg.t_start)
        self.prev_loss, self.momentum = state.get("prev_loss"), state.get("momentum", 0.0)
