"""Online distillation: deep mutual learning and BD-KD (networks that train each other at once).

The peer networks are the method's own modules: trained by the same optimizer as the student,
saved in checkpoints, never exported. The recipe needs no pre-trained teacher.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


from torch import Tensor, nn

from distill.config import option
from distill.losses import balanced_divergence, mutual_learning, reverse_kl
from distill.methods.base import METHODS, Method, MethodConfig
from distill.models.registry import create_model


@dataclass(kw_only=True)
class PeerSpec:
    name: str = option(help="model name of the peer network")
    kwargs: dict[str, Any] = option(default_factory=dict)


def build_peer(spec: PeerSpec, example: Tensor, num_classes: int) -> nn.Module:
    return create_model(spec.name, spec.kwargs, num_classes=num_classes, in_channels=example.shape[1],
                        image_size=example.shape[-1])


@dataclass(kw_only=True)
class DMLConfig(MethodConfig):
    name: str = "dml"
    peers: list[PeerSpec] = option(default_factory=lambda: [PeerSpec(name="resnet20")],
                                   help="networks trained alongside the student")
    temperature: float = option(1.0, min=0.0, min_exclusive=True, help="1 in the paper (no T^2 then)")
    mimic_weight: float = option(1.0, min=0.0)


@METHODS.register("dml", config=DMLConfig)
class DeepMutualLearning(Method):
    """DML: every network minimises CE + mean KL(p_peer || p_self) to the others, all trained together ("Deep Mutual Learning", CVPR 2018)."""

    needs_teacher = False

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.peers = nn.ModuleList(build_peer(p, self.ctx.example_input, self.ctx.num_classes) for p in self.cfg.peers)

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        logits = [self.student(batch["x"])] + [peer(batch["x"]) for peer in self.peers]
        parts: dict[str, Tensor] = {}
        total = 0.0
        for i, z in enumerate(logits):
            ce = self.cross_entropy(z, batch["y"])
            mimic = mutual_learning(z, [o for j, o in enumerate(logits) if j != i], temperature=self.cfg.temperature)
            total = total + ce + self.cfg.mimic_weight * mimic
            name = "student" if i == 0 else f"peer{i}"
            parts[f"ce_{name}"], parts[f"mimic_{name}"] = ce, mimic
        return {"loss": total, **parts}


@dataclass(kw_only=True)
class BDKDConfig(MethodConfig):
    name: str = "bd_kd"
    teacher_model: PeerSpec = option(default_factory=lambda: PeerSpec(name="resnet56"),
                                     help="the online teacher, trained together with the student")
    temperature: float = option(4.0, min=0.0, min_exclusive=True)
    student_weight: float = option(1.0, min=0.0, help="weight of the balanced divergence in the student loss")
    teacher_weight: float = option(1.0, min=0.0, help="weight of the teacher's reverse-KL regulariser")


@METHODS.register("bd_kd", config=BDKDConfig)
class BalancedDivergenceKD(Method):
    """BD-KD: online KD with entropy-balanced forward/reverse KL for the student and a reverse-KL regulariser for the teacher ("BD-KD", Amara et al., 2022).

    student: CE + T^2 [w KL(p_t || p_s) + (1 - w) KL(p_s || p_t)],  w = H_t / (H_s + H_t) per sample
    teacher: CE + T^2 KL(p_t || p_s)   (mode-seeking towards the student, "student-centred")
    Each network's term treats the other as a constant. The weighting function is our
    reconstruction (see `distill.losses.balanced_divergence`).
    """

    needs_teacher = False

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.online_teacher = build_peer(self.cfg.teacher_model, self.ctx.example_input, self.ctx.num_classes)

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        t = self.online_teacher(batch["x"])
        s = self.student(batch["x"])
        ce_s, ce_t = self.cross_entropy(s, batch["y"]), self.cross_entropy(t, batch["y"])
        bd = balanced_divergence(s, t.detach(), temperature=self.cfg.temperature)
        reg = reverse_kl(t, s.detach(), temperature=self.cfg.temperature) * self.cfg.temperature ** 2
        loss = ce_s + self.cfg.student_weight * bd + ce_t + self.cfg.teacher_weight * reg
        return {"loss": loss, "ce": ce_s, "bd": bd, "ce_teacher": ce_t, "teacher_reg": reg}


