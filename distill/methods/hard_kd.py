"""HARD-style distillation on inputs where teacher and student disagree."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from distill.config import option
from distill.losses import hinton_kd, kl
from distill.methods.base import METHODS, Method, MethodConfig


class AffineAugmentor(nn.Module):
    """Predicts a bounded per-image affine warp from the image and a noise channel (identity at init)."""

    def __init__(self, channels: int, max_shift: float, max_rotation: float, max_scale: float):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels + 1, 16, 3, 2, 1), nn.ReLU(inplace=True), nn.Conv2d(16, 32, 3, 2, 1),
                                 nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.limits = torch.tensor([max_shift, max_shift, max_rotation, max_scale])

    def forward(self, x: Tensor) -> Tensor:
        noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        tx, ty, angle, scale = (torch.tanh(self.net(torch.cat([x, noise], 1))) * self.limits.to(x)).unbind(1)
        cos, sin, zoom = torch.cos(angle), torch.sin(angle), 1 + scale
        theta = torch.stack([torch.stack([zoom * cos, -zoom * sin, tx], 1), torch.stack([zoom * sin, zoom * cos, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


@dataclass(kw_only=True)
class HARDConfig(MethodConfig):
    name: str = "hard_kd"
    max_shift: float = option(0.25, min=0.0, help="largest translation, as a fraction of the half-width")
    max_rotation: float = option(0.35, min=0.0, help="largest rotation in radians")
    max_scale: float = option(0.2, min=0.0, help="largest relative zoom")
    teacher_consistency: float = option(1.0, min=0.0, help="lambda: keeps the teacher's prediction on the warped image close to the clean one")
    temperature: float = option(4.0, min=0.0, min_exclusive=True)
    kd_weight: float = option(0.9, min=0.0)
    ce_weight: float = option(0.1, min=0.0)


@METHODS.register("hard_kd", config=HARDConfig)
class HARDKD(Method):
    """HARD-style KD: a learned affine augmentor makes inputs where teacher and student disagree; the student is distilled on clean + augmented images ("HARD: Hard Augmentations for Robust Distillation", Nix et al., 2023).

    Augmentor step: maximise KL(t(x_hat) || s(x_hat)) - lambda KL(t(x) || t(x_hat)) (the student and
    teacher held fixed); student step: CE on x + KD on [x, x_hat] with the teacher re-run on
    x_hat. Both are one backward: the augmentor only receives the first term's gradient, the
    student only the second's. No official code is public; this is the paper's affine variant
    built from its description.
    """

    needs_live_teacher = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        c = self.ctx.example_input.shape[1]
        self.augmentor = AffineAugmentor(c, self.cfg.max_shift, self.cfg.max_rotation, self.cfg.max_scale)

    def augmentor_loss(self, x: Tensor, warped: Tensor, t_clean: Tensor) -> Tensor:
        params = {n: p.detach() for n, p in self.student.named_parameters()}
        buffers = {n: b.clone() for n, b in self.student.named_buffers()}
        s_warp = functional_call(self.student, (params, buffers), (warped,))
        t_warp = self.teacher.model(warped)  # frozen weights, but gradients flow to the input
        disagreement = kl(s_warp, t_warp, temperature=self.cfg.temperature)
        drift = kl(t_warp, t_clean, temperature=self.cfg.temperature)
        return -disagreement + self.cfg.teacher_consistency * drift, disagreement

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        x, y = batch["x"], batch["y"]
        warped = self.augmentor(x)
        t_clean = self.teacher(x)
        aug_loss, disagreement = self.augmentor_loss(x, warped, t_clean)
        both = torch.cat([x, warped.detach()])
        s, t = self.logits_pair(both)
        n = len(x)
        ce = self.cross_entropy(s[:n], y)
        kd = hinton_kd(s, t, temperature=self.cfg.temperature)
        loss = self.cfg.ce_weight * ce + self.cfg.kd_weight * kd + aug_loss
        return {"loss": loss, "ce": ce, "kd": kd, "augmentor": aug_loss, "disagreement": disagreement.detach()}
