"""Token-level distillation of causal LMs with any registered divergence (and the CE-only baseline)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from torch import Tensor

from distill.config import option
from distill.losses.registry import DIVERGENCES, DivergenceConfig, divergence_config
from distill.methods.base import METHODS, MethodConfig
from distill.methods.lm_base import DivergenceMethodConfig, LMMethod


@dataclass(kw_only=True)
class LMKDConfig(DivergenceMethodConfig):
    name: str = "lm_kd"
    divergence: DivergenceConfig = option(default_factory=lambda: divergence_config("kl"), registry=DIVERGENCES,
                                          help="token divergence and its options, e.g. {name: jsd, beta: 0.5}; "
                                          "`distill methods --divergences` lists them")
    temperature: float = option(1.0, min=0.0, min_exclusive=True, help="loss temperature (not the sampling one); no T^2")
    kd_weight: float = option(1.0, min=0.0)
    ce_weight: float = option(0.0, min=0.0, help="weight of next-token cross-entropy on the labels")
    chunk_size: Optional[int] = option(None, min=1, help="tokens per logit chunk (default: from a memory budget)")


@METHODS.register("lm_kd", config=LMKDConfig)
class LMKD(LMMethod):
    """Causal-LM KD: ce_weight * CE + kd_weight * divergence(p_t, p_s) per token, chunked so N x V logits never exist."""

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        student, teacher, labels = self.hidden_states(batch)
        if not len(labels):
            return self.empty(student)
        out = self.fused(student, teacher, labels, divergence=self.cfg.divergence, temperature=self.cfg.temperature,
                         kd_weight=self.cfg.kd_weight, ce_weight=self.cfg.ce_weight, chunk_size=self.cfg.chunk_size)
        parts = {"loss": out.loss, self.cfg.divergence.name: out.divergence}
        if out.ce is not None:
            parts["ce"] = out.ce
        return parts


@dataclass(kw_only=True)
class LMCEConfig(MethodConfig):
    name: str = "lm_ce"
    chunk_size: Optional[int] = option(None, min=1)


@METHODS.register("lm_ce", config=LMCEConfig)
class LMCE(LMMethod):
    """Causal-LM baseline: next-token cross-entropy only, no teacher (chunked like the KD losses)."""

    needs_teacher = False
    baseline = True

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        student, _, labels = self.hidden_states(batch, need_teacher=False)
        if not len(labels):
            return self.empty(student)
        out = self.fused(student, None, labels, divergence="kl", temperature=1.0, kd_weight=0.0, ce_weight=1.0,
                         chunk_size=self.cfg.chunk_size)
        return {"loss": out.loss, "ce": out.ce}
