"""ND / KD++: feature norm and direction."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from distill.config import option
from distill.losses import hinton_kd, nd_loss
from distill.methods.base import METHODS, Method, MethodConfig
from distill.methods.features import resolve_paths


@dataclass(kw_only=True)
class NDConfig(MethodConfig):
    name: str = "nd"
    nd_weight: float = option(2.0, min=0.0, help="ND weight (official res56->res20: 2.0)")
    kd_weight: float = option(1.0, min=0.0, help="KD weight of KD++ (official res56->res20: 1.0)")
    temperature: float = option(4.0, min=0.0, min_exclusive=True)
    kd_warmup_epochs: float = option(20.0, min=0.0, help="the KD term ramps over this many epochs (ND does not)")
    ce_weight: float = option(1.0, min=0.0)


@METHODS.register("nd", config=NDConfig)
class NormDirectionKD(Method):
    """KD++: CE + warm-up * KD + ND, pulling the student's embedding along the teacher's class-mean direction with a large norm ("Improving KD via Regularizing Feature Norm and Direction", 2023).

    The class centres are the teacher's mean penultimate embeddings per class over the training
    split, computed once before training on unaugmented images (the official script uses one
    augmented pass). A BN-Dropout-Linear projector maps the student embedding when widths differ.
    """

    needs_live_teacher = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.s_path = resolve_paths(self.student, "penultimate", "nd")[0]
        self.t_path = resolve_paths(self.teacher, "penultimate", "nd")[0]
        self.s_taps, self.t_taps = self.tap(self.student, [self.s_path]), self.tap(self.teacher, [self.t_path])
        s_dim = self.probe(self.student, self.s_taps)[self.s_path][0].numel()
        t_dim = self.probe(self.teacher, self.t_taps)[self.t_path][0].numel()
        self.project = nn.Identity() if s_dim == t_dim else nn.Sequential(nn.BatchNorm1d(s_dim), nn.Dropout(0.5), nn.Linear(s_dim, t_dim))
        self.register_buffer("centers", self.teacher_class_centers(t_dim))

    @torch.no_grad()
    def teacher_class_centers(self, dim: int) -> Tensor:
        sums, counts = torch.zeros(self.ctx.num_classes, dim), torch.zeros(self.ctx.num_classes)
        for batch in self.ctx.plain_train_batches():
            self.teacher(batch["x"])
            emb = self.t_taps[self.t_path].flatten(1).float()
            sums.index_add_(0, batch["y"], emb)
            counts.index_add_(0, batch["y"], torch.ones(len(batch["y"])))
        return sums / counts.clamp_min(1)[:, None]

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        s, t = self.logits_pair(batch)
        ce = self.cross_entropy(s, batch["y"])
        kd = hinton_kd(s, t, temperature=self.cfg.temperature)
        warm = min((self.epoch + 1) / self.cfg.kd_warmup_epochs, 1.0) if self.cfg.kd_warmup_epochs else 1.0
        es = self.project(self.s_taps[self.s_path].flatten(1))
        nd = nd_loss(es, self.t_taps[self.t_path].flatten(1), self.centers, batch["y"])
        loss = self.cfg.ce_weight * ce + warm * self.cfg.kd_weight * kd + self.cfg.nd_weight * nd
        return {"loss": loss, "ce": ce, "kd": kd, "nd": nd}
