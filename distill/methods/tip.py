"""TIP: distil only the informative tokens of (on-policy) rollouts."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

import torch
from torch import Tensor

from distill.config import option
from distill.data.token_stream import next_token_targets
from distill.losses.fused import token_statistics
from distill.losses.registry import DIVERGENCES, DivergenceConfig, divergence_config
from distill.losses.selection import importance, select_tokens
from distill.methods.base import METHODS
from distill.methods.lm_base import DivergenceMethodConfig, LMMethod


@dataclass(kw_only=True)
class TIPConfig(DivergenceMethodConfig):
    name: str = "tip"
    keep: float = option(0.5, min=0.0, max=1.0, min_exclusive=True, help="fraction of each rollout's tokens trained on")
    rule: Literal["entropy", "q3", "soft_or"] = option("soft_or", help="entropy, q3 (low entropy, high divergence) or soft_or")
    entropy_clip_quantile: float = option(0.98, min=0.0, max=1.0)
    divergence: DivergenceConfig = option(default_factory=lambda: divergence_config("reverse_kl"), registry=DIVERGENCES,
                                          help="the training loss on the kept tokens (any registered divergence)")
    temperature: float = option(1.0, min=0.0, min_exclusive=True)
    ce_weight: float = option(0.0, min=0.0)
    chunk_size: Optional[int] = option(None, min=1)


@METHODS.register("tip", config=TIPConfig)
class TIP(LMMethod):
    """TIP: score tokens by student entropy (/ log V) and reverse KL to the teacher, train on the top fraction per rollout ("TIP: Token Importance in On-Policy Distillation", 2026).

    A no-grad chunked pass scores every completion token; the loss (a token divergence, chunked)
    then runs on the kept tokens only, averaged over them. keep = 1 is plain lm_kd. Logs the kept
    fraction ("tip_kept") and the logit memory a dense loss would save on the dropped tokens
    ("tip_dense_mib_saved": dropped x V x 8 bytes, float32 logits + their gradient).
    """

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        student, teacher, labels = self.hidden_states(batch)
        if not len(labels):
            return self.empty(student)
        kept = torch.ones(len(labels), dtype=torch.bool)
        if self.cfg.keep < 1.0:
            h, d = token_statistics(student.detach(), self.head.detach(), teacher, vocab_size=self.vocab_size,
                                    chunk_size=self.cfg.chunk_size, temperature=self.cfg.temperature)
            sequence = torch.nonzero(next_token_targets(batch)[1])[:, 0]
            kept = select_tokens(importance(h, d, self.cfg.rule, self.cfg.entropy_clip_quantile), sequence, self.cfg.keep)
            index = kept.nonzero().squeeze(1)
            student, labels, teacher = student[index], labels[index], teacher.select(index)
        out = self.fused(student, teacher, labels, divergence=self.cfg.divergence, temperature=self.cfg.temperature,
                         kd_weight=1.0, ce_weight=self.cfg.ce_weight, chunk_size=self.cfg.chunk_size)
        # memory a dense (unchunked) loss would not allocate for the dropped tokens: their float32 student
        # logits and the logits' gradient (V each). The chunked path already bounds logit memory, so
        # this is the saving over a dense loss, not over distill's default.
        dropped_mib = (len(kept) - int(kept.sum())) * self.vocab_size * 8 / 2 ** 20
        return {"loss": out.loss, self.cfg.divergence.name: out.divergence, "tip_kept": kept.float().mean(),
                "tip_dense_mib_saved": torch.tensor(float(dropped_mib))}
