"""Dual-head knowledge distillation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from distill.config import option
from distill.losses import binary_kl_norm, hinton_kd
from distill.methods.base import METHODS, Method, MethodConfig
from distill.models.hooks import penultimate_path


@dataclass(kw_only=True)
class DHKDConfig(MethodConfig):
    name: str = "dhkd"
    temperature: float = option(2.0, min=0.0, min_exclusive=True, help="T of the binary KL-norm (official: 2)")
    bkn_weight: float = option(1.0, min=0.0, help="weight of the auxiliary head's binary KL-norm (official CIFAR: 1)")
    ce_weight: float = option(1.0, min=0.0, help="weight of CE on the main head")
    kd_weight: float = option(0.0, min=0.0, help="optional Hinton KD on the main head (0 in the official code)")
    kd_temperature: float = option(4.0, min=0.0, min_exclusive=True)
    head: Literal["linear", "nonlinear"] = option("nonlinear", help="auxiliary head: Linear, or Linear-Dropout-BN-ReLU-Linear")
    gradient_alignment: bool = option(True, help="PCGrad: drop the part of the distillation gradient that opposes CE's")


def auxiliary_head(width: int, num_classes: int, kind: str) -> nn.Module:
    if kind == "linear":
        return nn.Linear(width, num_classes)
    return nn.Sequential(nn.Linear(width, 200), nn.Dropout(0.1), nn.BatchNorm1d(200), nn.ReLU(inplace=True),
                         nn.Linear(200, num_classes))


def aligned_surrogate(ce: Tensor, distill_loss: Tensor, params: list[nn.Parameter]) -> Tensor:
    """A loss whose value is ce + distill_loss and whose gradient is PCGrad's: g_ce + g_kd, with g_kd
    projected off g_ce when they conflict (<g_kd, g_ce> < 0). Computed with two autograd.grad calls."""
    g_ce = torch.autograd.grad(ce, params, retain_graph=True, allow_unused=True)
    g_kd = torch.autograd.grad(distill_loss, params, retain_graph=True, allow_unused=True)
    g_ce = [g if g is not None else torch.zeros_like(p) for g, p in zip(g_ce, params)]
    g_kd = [g if g is not None else torch.zeros_like(p) for g, p in zip(g_kd, params)]
    dot = sum((a * b).sum() for a, b in zip(g_kd, g_ce))
    if dot < 0:
        norm2 = sum((a * a).sum() for a in g_ce).clamp_min(1e-20)
        g_kd = [k - dot / norm2 * c for k, c in zip(g_kd, g_ce)]
    surrogate = sum((p * (c + k).detach()).sum() for p, c, k in zip(params, g_ce, g_kd))
    return surrogate - surrogate.detach() + (ce + distill_loss).detach()


@METHODS.register("dhkd", config=DHKDConfig)
class DualHeadKD(Method):
    """Dual-head KD: CE on the main head, binary KL-norm on an auxiliary head (dropped at export) ("Dual-Head Knowledge Distillation", Yang et al., 2024).

    The auxiliary head reads the student's penultimate feature (a forward hook) and is trained to
    match the teacher's logits with the per-class binary KL-norm; with `gradient_alignment` the
    update follows PCGrad as in the official CIFAR runs (two backward passes through the student).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.path = penultimate_path(self.student)
        self.taps = self.tap(self.student, [self.path])
        width = self.probe(self.student, self.taps)[self.path].shape[1]
        self.aux = auxiliary_head(width, self.ctx.num_classes, self.cfg.head)

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        s, t = self.logits_pair(batch)
        ce = self.cross_entropy(s, batch["y"])
        bkn = binary_kl_norm(self.aux(self.taps[self.path]), t, temperature=self.cfg.temperature)
        distill_loss = self.cfg.bkn_weight * bkn
        parts = {"ce": ce, "bkn": bkn}
        if self.cfg.kd_weight:
            parts["kd"] = hinton_kd(s, t, temperature=self.cfg.kd_temperature)
            distill_loss = distill_loss + self.cfg.kd_weight * parts["kd"]
        weighted_ce = self.cfg.ce_weight * ce
        if self.cfg.gradient_alignment and torch.is_grad_enabled():
            params = [p for m in (self.student, self.aux) for p in m.parameters() if p.requires_grad]
            return {"loss": aligned_surrogate(weighted_ce, distill_loss, params), **parts}
        return {"loss": weighted_ce + distill_loss, **parts}
