"""G-OPD / ExOPD: on-policy distillation as a policy gradient with a (possibly extrapolated) teacher reward."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.config import option
from distill.data.token_stream import next_token_targets
from distill.losses.fused import teacher_token_logprobs, token_logprobs
from distill.methods.base import METHODS, MethodConfig
from distill.methods.lm_base import LMMethod
from distill.models.hf import LMBody, load_causal_lm
from distill.models.teacher import FrozenTeacher


def policy_gradient_coefficients(advantage: Tensor, ratio: Tensor, clip_eps: float, dual_clip: float) -> Tensor:
    """d(surrogate)/d(log pi) per token for the PPO loss max(-A r, -A clip(r, 1-eps, 1+eps)), dual-clipped at c for A < 0.

    Zero where the clipped branch is active (its gradient is zero), -A r elsewhere.
    """
    low, high = 1 - clip_eps, 1 + clip_eps
    clipped = ((advantage > 0) & (ratio > high)) | ((advantage < 0) & (ratio < low))
    dual = (advantage < 0) & (ratio > dual_clip)
    return torch.where(clipped | dual, torch.zeros_like(ratio), -advantage * ratio)


@dataclass(kw_only=True)
class GOPDConfig(MethodConfig):
    name: str = "g_opd"
    reward_scale: float = option(1.0, min=0.0, help="lambda: 1 is on-policy distillation, > 1 extrapolates (ExOPD: 1.25)")
    reference: Optional[str] = option(None, help="reference model folder (default: a frozen copy of the student's initial weights)")
    clip_eps: float = option(0.2, min=0.0, help="PPO ratio clipping")
    dual_clip: float = option(3.0, min=1.0, help="dual-clip bound for negative advantages")
    chunk_size: Optional[int] = option(None, min=1)


@METHODS.register("g_opd", config=GOPDConfig)
class GeneralizedOPD(LMMethod):
    """G-OPD / ExOPD: per-token reward lambda (log p_T - log p_ref) as the advantage of a clipped policy gradient ("Learning beyond Teacher: Generalized On-Policy Distillation with Reward Extrapolation", 2026).

    On student samples y: A_t = lambda (log p_T(y_t) - log p_ref(y_t)) - (log p_old(y_t) - log p_ref(y_t)),
    no normalisation, no extra KL penalty (official code); loss = token-mean of the clipped PPO
    surrogate. lambda = 1 is plain on-policy distillation (the reference cancels); lambda > 1
    extrapolates beyond the teacher. The reference defaults to the student's initial weights.
    Needs on-policy batches (on_policy.lmbda = 1): the advantage is only meaningful on the
    student's own samples. With one update per batch the ratio is 1 and clipping is inactive.
    """

    requires_on_policy = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        ref = load_causal_lm(self.cfg.reference) if self.cfg.reference else copy.deepcopy(self.student)
        self._models["reference"] = FrozenTeacher(LMBody(ref))  # held by reference: not trained, not checkpointed

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        student, teacher, labels = self.hidden_states(batch)
        if not len(labels):
            return self.empty(student)
        ids, mask = batch["input_ids"], next_token_targets(batch)[1]
        ref_body = self._models["reference"]
        ref_hidden = ref_body(ids, batch.get("attention_mask"))[:, :-1][mask]
        lp_old = token_logprobs(student.detach(), self.head.detach(), labels, self.vocab_size, self.cfg.chunk_size)
        lp_teacher = teacher_token_logprobs(teacher, labels, vocab_size=self.vocab_size, chunk_size=self.cfg.chunk_size)
        lp_ref = token_logprobs(ref_hidden, ref_body.model.head_weight, labels, self.vocab_size, self.cfg.chunk_size)
        advantage = self.cfg.reward_scale * (lp_teacher - lp_ref) - (lp_old - lp_ref)
        ratio = torch.ones_like(lp_old)  # one update per on-policy batch: pi_theta == pi_old when the loss is taken
        coeff = policy_gradient_coefficients(advantage, ratio, self.cfg.clip_eps, self.cfg.dual_clip)
        # d(-log p)/d theta weighted by -coeff gives the surrogate's gradient sum_t coeff_t d(log p_t)
        out = self.fused(student, None, labels, divergence="kl", temperature=1.0, kd_weight=0.0, ce_weight=1.0,
                         chunk_size=self.cfg.chunk_size, weights=-coeff)
        surrogate = (coeff * 1.0).mean()  # value of the token-mean surrogate max(-A r, ...) at r = 1
        loss = out.loss - out.loss.detach() + surrogate
        return {"loss": loss, "advantage": advantage.mean(), "reward": (lp_teacher - lp_ref).mean(),
                "logp_teacher_minus_student": (lp_teacher - lp_old).mean()}
