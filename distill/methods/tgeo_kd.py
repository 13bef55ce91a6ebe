"""TGeo-KD: a learned per-sample fusion of KD and CE."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import cycle
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from distill.config import option
from distill.errors import ConfigError
from distill.losses import fused_kd_ce, geometry_features
from distill.methods.base import METHODS, Method, MethodConfig


@dataclass(kw_only=True)
class TGeoKDConfig(MethodConfig):
    name: str = "tgeo_kd"
    temperature: float = option(4.0, min=0.0, min_exclusive=True)
    hidden: int = option(128, min=1, help="width of the fusion network (official CIFAR: 128)")
    inner_lr: float = option(0.05, min=0.0, min_exclusive=True, help="step size of the virtual student update")


@METHODS.register("tgeo_kd", config=TGeoKDConfig)
class TGeoKD(Method):
    """TGeo-KD: alpha_i = f(geometry of student, teacher, label, teacher class-mean); loss (1-alpha) CE + alpha KD ("Less or More From Teacher", ICLR 2024).

    f (9C -> hidden -> 1, sigmoid) is trained as the paper intends, by bilevel optimisation on a
    held-out split (`data.hold_out`): a one-step unrolled update of the student with the current
    alpha, whose cross-entropy on a held-out batch is back-propagated to f (meta-weight-net style).
    The student itself trains on the fused loss with alpha held constant. The released code
    instead trains f on the training loss (which drives alpha to whichever loss is smaller) and
    takes the class means on the test set; we compute them on the training split.
    """

    needs_live_teacher = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.ctx.held_out_batches is None:
            raise ConfigError("method tgeo_kd learns from a held-out split: set data.hold_out (e.g. 0.1)")
        c = self.ctx.num_classes
        self.fusion = nn.Sequential(nn.Linear(9 * c, self.cfg.hidden), nn.ReLU(inplace=True), nn.Linear(self.cfg.hidden, 1))
        self.register_buffer("class_mean", self._teacher_class_mean())
        self._held = None

    @torch.no_grad()
    def _teacher_class_mean(self) -> Tensor:
        c = self.ctx.num_classes
        sums, counts = torch.zeros(c, c), torch.zeros(c)
        for batch in self.ctx.plain_train_batches():
            sums.index_add_(0, batch["y"], F.softmax(self.teacher(batch["x"]).float(), dim=1))
            counts.index_add_(0, batch["y"], torch.ones(len(batch["y"])))
        return sums / counts.clamp_min(1)[:, None]

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        self._held = cycle(list(self.ctx.held_out_batches(epoch)))

    def alpha(self, s: Tensor, t: Tensor, y: Tensor) -> Tensor:
        return torch.sigmoid(self.fusion(geometry_features(s.detach(), t, self.class_mean, y))).squeeze(1)

    def meta_loss(self, x: Tensor, t: Tensor, y: Tensor, alpha: Tensor) -> Tensor:
        """Held-out CE of the student after one virtual step on the alpha-fused loss; grads reach `fusion` only."""
        params = {n: p.detach().requires_grad_(True) for n, p in self.student.named_parameters()}
        buffers = {n: b.clone() for n, b in self.student.named_buffers()}  # the virtual passes leave BN stats alone
        inner = fused_kd_ce(functional_call(self.student, (params, buffers), (x,)), t, y, alpha,
                            temperature=self.cfg.temperature)
        grads = torch.autograd.grad(inner, list(params.values()), create_graph=True)
        stepped = {n: p - self.cfg.inner_lr * g for (n, p), g in zip(params.items(), grads)}
        if self._held is None:
            self.on_epoch_start(self.epoch)
        held = next(self._held)
        return F.cross_entropy(functional_call(self.student, (stepped, buffers), (held["x"],)), held["y"])

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        s, t = self.logits_pair(batch)
        y = batch["y"]
        alpha = self.alpha(s, t, y)
        fused = fused_kd_ce(s, t, y, alpha.detach(), temperature=self.cfg.temperature)
        parts = {"fused": fused, "alpha": alpha.mean().detach()}
        if not torch.is_grad_enabled():
            return {"loss": fused, **parts}
        meta = self.meta_loss(batch["x"], t, y, alpha)
        return {"loss": fused + meta, "meta_ce": meta, **parts}
