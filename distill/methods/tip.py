"""TIP: distil only the informative tokens of (on-policy) rollouts."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

import torch
from torch import Tensor

from distill.config import option
from distill.losses.fused import token_statistics
from distill.losses.selection import importance, select_tokens
from distill.losses.sparse import SparseTargets
from distill.methods.base import METHODS, MethodConfig
from distill.methods.lm_base import LMMethod, next_token_targets


@dataclass(kw_only=True)
class TIPConfig(MethodConfig):
    name: str = "tip"
    keep: float = option(0.5, min=0.0, max=1.0, min_exclusive=True, help="fraction of each rollout's tokens trained on")
    rule: Literal["entropy", "q3", "soft_or"] = option("soft_or", help="entropy, q3 (low entropy, high divergence) or soft_or")
    entropy_clip_quantile: float = option(0.98, min=0.0, max=1.0)
    divergence: Literal["kl", "reverse_kl", "jsd"] = option("reverse_kl", help="the training loss on the kept tokens")
    beta: float = option(0.5, min=0.0, max=1.0, help="jsd beta")
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
            h, d = token_statistics(student.detach(), self.head(), self._chunks(teacher), vocab_size=self.vocab_size,
                                    chunk_size=self.cfg.chunk_size, temperature=self.cfg.temperature)
            sequence = torch.nonzero(next_token_targets(batch)[1])[:, 0]
            kept = select_tokens(importance(h, d, self.cfg.rule, self.cfg.entropy_clip_quantile), sequence, self.cfg.keep)
            student, labels = student[kept], labels[kept]
            teacher = self._subset(teacher, kept)
        extra = {"beta": self.cfg.beta} if self.cfg.divergence == "jsd" else {}
        out = self.fused(student, teacher, labels, divergence=self.cfg.divergence, temperature=self.cfg.temperature,
                         kd_weight=1.0, ce_weight=self.cfg.ce_weight, chunk_size=self.cfg.chunk_size, **extra)
        # memory a dense (unchunked) loss would not allocate for the dropped tokens: their float32 student
        # logits and the logits' gradient (V each). The chunked path already bounds logit memory, so
        # this is the saving over a dense loss, not over distill's default.
        dropped_mib = (len(kept) - int(kept.sum())) * self.vocab_size * 8 / 2 ** 20
        return {"loss": out.loss, self.cfg.divergence: out.divergence, "tip_kept": kept.float().mean(),
                "tip_dense_mib_saved": torch.tensor(float(dropped_mib))}

    def head(self) -> Tensor:
        body = self.student_body.module if hasattr(self.student_body, "module") else self.student_body
        return body.head_weight

    def _chunks(self, teacher: Any):
        if isinstance(teacher, SparseTargets):
            return lambda s, e: teacher.chunk(s, e, self.vocab_size, self.cfg.temperature)
        head = self.teacher_body.model.head_weight
        return lambda s, e: teacher[s:e] @ head[:self.vocab_size].t()

    @staticmethod
    def _subset(teacher: Any, kept: Tensor) -> Any:
        if isinstance(teacher, SparseTargets):
            return SparseTargets(teacher.ids[kept], teacher.logp[kept], teacher.tail[kept], teacher.temperature, teacher.mode)
        return teacher[kept]
