"""OFA-KD: one-for-all distillation across architectures."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from torch import Tensor, nn

from distill.config import option
from distill.losses import ofa_loss
from distill.methods.base import METHODS, Method, MethodConfig
from distill.methods.features import resolve_paths
from distill.models.adapters import logit_projector


@dataclass(kw_only=True)
class OFAConfig(MethodConfig):
    name: str = "ofa"
    student_stages: Union[str, list[str]] = option("auto", help="student stages that get a projector to logit space")
    epsilon: float = option(1.0, min=0.0, min_exclusive=True, help="target-enhancement exponent (official default 1; 1.5 in the ImageNet example)")
    temperature: float = option(1.0, min=0.0, min_exclusive=True)
    ofa_weight: float = option(1.0, min=0.0, help="weight of the summed stage-branch losses")
    kd_weight: float = option(1.0, min=0.0, help="weight of the OFA loss on the student's own logits")
    ce_weight: float = option(1.0, min=0.0)
    projector_width: int = option(0, min=0, help="branch width before the classifier (0: the wider of the two penultimate widths)")


@METHODS.register("ofa", config=OFAConfig)
class OFA(Method):
    """OFA-KD: each student stage gets a projector to logits, all distilled from the teacher's final logits with the OFA loss ("One-for-All", NeurIPS 2023).

    Teacher intermediate features are never used, so student and teacher may be any mix of CNN,
    ViT or MLP. Projectors: SepConv down-sampling for CNN stages (official), a simplified token
    head for (B, L, D) features, an MLP for vectors. They are dropped at export.
    """

    needs_live_teacher = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.paths = resolve_paths(self.student, self.cfg.student_stages, "method.student_stages (ofa)")
        self.taps = self.tap(self.student, self.paths)
        feats = self.probe(self.student, self.taps)
        width = self.cfg.projector_width or self._default_width(feats)
        last = len(self.paths) - 1
        self.projectors = nn.ModuleList(logit_projector(tuple(feats[p].shape), last - i, width, self.ctx.num_classes)
                                        for i, p in enumerate(self.paths))

    def _default_width(self, feats: dict[str, Tensor]) -> int:
        widths = [f.shape[1] if f.dim() != 3 else f.shape[2] for f in feats.values()]
        teacher_taps = self.tap(self.teacher, resolve_paths(self.teacher, "penultimate", "ofa"))
        t_feat = next(iter(self.probe(self.teacher, teacher_taps).values()))
        teacher_taps.remove()
        return max(max(widths), t_feat.flatten(1).shape[1])

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        s, t = self.logits_pair(batch)
        y = batch["y"]
        ce = self.cross_entropy(s, y)
        kd = ofa_loss(s, t, y, epsilon=self.cfg.epsilon, temperature=self.cfg.temperature)
        branches = sum(ofa_loss(proj(self.taps[p]), t, y, epsilon=self.cfg.epsilon, temperature=self.cfg.temperature)
                       for proj, p in zip(self.projectors, self.paths))
        loss = self.cfg.ce_weight * ce + self.cfg.kd_weight * kd + self.cfg.ofa_weight * branches
        return {"loss": loss, "ce": ce, "ofa_logits": kd, "ofa_stages": branches}
