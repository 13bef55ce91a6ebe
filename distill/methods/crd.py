"""Contrastive representation distillation."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.config import option
from distill.errors import ConfigError
from distill.losses import hinton_kd, nce_loss, nce_scores
from distill.methods.base import METHODS, Method, MethodConfig
from distill.methods.features import resolve_paths
from distill.models.adapters import Embed


@dataclass(kw_only=True)
class CRDConfig(MethodConfig):
    name: str = "crd"
    feat_dim: int = option(128, min=1, help="embedding width of both heads")
    negatives: int = option(16384, min=1, help="negatives per sample, drawn from other classes (nce_k)")
    nce_temperature: float = option(0.07, min=0.0, min_exclusive=True)
    momentum: float = option(0.5, min=0.0, max=1.0, help="memory-bank update momentum")
    crd_weight: float = option(0.8, min=0.0)
    ce_weight: float = option(1.0, min=0.0)
    kd_weight: float = option(0.0, min=0.0, help="1.0 for the paper's CRD+KD rows")
    temperature: float = option(4.0, min=0.0, min_exclusive=True)


@METHODS.register("crd", config=CRDConfig)
class CRD(Method):
    """CRD: CE + 0.8 * NCE contrast of student/teacher embeddings against a memory bank of other-class samples ("Contrastive Representation Distillation", ICLR 2020).

    Two linear+L2 embedding heads, two memory banks (n_train x feat_dim, updated with momentum at
    the batch's sample indices), normalising constants fixed on the first batch, as in
    RepDistiller. Negatives are drawn with replacement from the other classes (the official code
    draws without replacement; with tens of thousands of candidates the difference is negligible).
    """

    needs_live_teacher = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.ctx.train_labels is None:
            raise ConfigError("method crd needs sample indices and labels of the training split")
        self.s_path = resolve_paths(self.student, "penultimate", "crd")[0]
        self.t_path = resolve_paths(self.teacher, "penultimate", "crd")[0]
        self.s_taps, self.t_taps = self.tap(self.student, [self.s_path]), self.tap(self.teacher, [self.t_path])
        s_dim = self.probe(self.student, self.s_taps)[self.s_path][0].numel()
        t_dim = self.probe(self.teacher, self.t_taps)[self.t_path][0].numel()
        self.embed_s, self.embed_t = Embed(s_dim, self.cfg.feat_dim), Embed(t_dim, self.cfg.feat_dim)
        n, stdv = self.ctx.num_train, 1.0 / math.sqrt(self.cfg.feat_dim / 3)
        self.register_buffer("memory_s", torch.rand(n, self.cfg.feat_dim).mul_(2 * stdv).add_(-stdv))
        self.register_buffer("memory_t", torch.rand(n, self.cfg.feat_dim).mul_(2 * stdv).add_(-stdv))
        self.register_buffer("z", torch.full((2,), -1.0))  # normalising constants, fixed after the first batch
        self._others = self._other_class_indices(self.ctx.train_labels)

    @staticmethod
    def _other_class_indices(labels: Tensor) -> list[Tensor]:
        return [torch.nonzero(labels != c).squeeze(1) for c in range(int(labels.max()) + 1)]

    def sample_contrast(self, index: Tensor, labels: Tensor) -> Tensor:
        """(B, K+1): the sample itself, then K indices of other-class samples."""
        negs = torch.stack([others[torch.randint(len(others), (self.cfg.negatives,))]
                            for others in (self._others[int(c)] for c in labels)])
        return torch.cat([index[:, None], negs], dim=1)

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        s, t = self.logits_pair(batch)
        ce = self.cross_entropy(s, batch["y"])
        v_s, v_t = self.embed_s(self.s_taps[self.s_path]), self.embed_t(self.t_taps[self.t_path])
        idx = self.sample_contrast(batch["index"], batch["y"])
        out_s = nce_scores(v_s, self.memory_t[idx], self.cfg.nce_temperature)  # student anchor vs teacher memory
        out_t = nce_scores(v_t, self.memory_s[idx], self.cfg.nce_temperature)
        if self.z[0] < 0:
            self.z.copy_(torch.stack([out_s.mean(), out_t.mean()]).detach() * self.ctx.num_train)
        crd = nce_loss(out_s / self.z[0], self.ctx.num_train) + nce_loss(out_t / self.z[1], self.ctx.num_train)
        self._update_memory(batch["index"], v_s.detach(), v_t.detach())
        loss = self.cfg.ce_weight * ce + self.cfg.crd_weight * crd
        parts = {"ce": ce, "crd": crd}
        if self.cfg.kd_weight:
            parts["kd"] = hinton_kd(s, t, temperature=self.cfg.temperature)
            loss = loss + self.cfg.kd_weight * parts["kd"]
        return {"loss": loss, **parts}

    @torch.no_grad()
    def _update_memory(self, index: Tensor, v_s: Tensor, v_t: Tensor) -> None:
        m = self.cfg.momentum
        self.memory_s[index] = F.normalize(self.memory_s[index] * m + v_s * (1 - m), dim=1)
        self.memory_t[index] = F.normalize(self.memory_t[index] * m + v_t * (1 - m), dim=1)
