"""What causal-LM methods share: next-token alignment, valid-token counting, the fused loss.

LM methods read batches of {"input_ids", "labels", "attention_mask"} (labels -100 where no loss
is taken) and never build B x T x V logits: they take final hidden states from the context's
student body (`LMContext.student_body`, possibly DDP-wrapped), the teacher as one
`TeacherSignal` from the context's teacher source (live, store, ...), and call
`fused_linear_divergence`. They never ask where the teacher came from.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from distill.data.token_stream import next_token_targets
from distill.losses.fused import FusedLoss, fused_linear_divergence
from distill.losses.registry import DivergenceConfig
from distill.losses.signal import TeacherSignal
from distill.methods.base import Method, MethodConfig
from distill.methods.context import LMContext

MOVED_DIVERGENCE_OPTIONS = ("beta", "alpha", "mu")


@dataclass(kw_only=True)
class DivergenceMethodConfig(MethodConfig):
    """A method config with a `divergence: {name: ..., <options>}` field; the old flat options fail with the new form."""

    @classmethod
    def moved_key_hint(cls, key: str, data: dict[str, Any]) -> str | None:
        if key not in MOVED_DIVERGENCE_OPTIONS:
            return None
        div = data.get("divergence", "kl")
        name = div.get("name", "kl") if isinstance(div, dict) else div
        return (f"divergence options now go inside the divergence: write "
                f"divergence: {{name: {name}, {key}: {data[key]}}}")


def unwrap(body: nn.Module) -> nn.Module:
    """The body inside a DistributedDataParallel wrapper (or the body itself)."""
    return body.module if isinstance(body, nn.parallel.DistributedDataParallel) else body


class LMMethod(Method):
    """Base of causal-LM methods (task: causal_lm)."""

    task = "causal_lm"
    ctx: LMContext

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.tokens_seen = 0  # valid training tokens this process has counted (throughput figures)

    @property
    def student_body(self) -> nn.Module:
        return self.ctx.student_body

    @property
    def head(self) -> Tensor:
        return unwrap(self.ctx.student_body).head_weight

    @property
    def vocab_size(self) -> int:
        return self.ctx.vocab_size

    def count(self, batch: dict[str, Tensor]) -> int:
        """Valid next-token positions: the Trainer weighs micro-batches and ranks by this (once per micro-batch)."""
        n = int(next_token_targets(batch)[1].sum())
        self.tokens_seen += n
        return n

    def hidden_states(self, batch: dict[str, Tensor], need_teacher: bool = True
                      ) -> tuple[Tensor, TeacherSignal | None, Tensor]:
        """(student (N, H), teacher signal at the same N positions or None, labels (N,)): valid positions only."""
        labels, mask = next_token_targets(batch)
        teacher = None
        if need_teacher and self.ctx.teacher is not None:  # first: a live teacher's temporaries are freed
            teacher = self.ctx.teacher.signal(batch, mask)  # before the student's activations exist
        student = self.student_body(batch["input_ids"], batch.get("attention_mask"))[:, :-1][mask]
        return student, teacher, labels[mask]

    def fused(self, student: Tensor, teacher: TeacherSignal | None, labels: Tensor | None, *,
              divergence: DivergenceConfig | str, temperature: float, kd_weight: float, ce_weight: float,
              chunk_size: int | None, weights: Tensor | None = None) -> FusedLoss:
        return fused_linear_divergence(student, self.head, teacher, divergence=divergence, temperature=temperature,
                                       ce_labels=labels if ce_weight else None,
                                       kd_weight=kd_weight if teacher is not None else 0.0, ce_weight=ce_weight,
                                       chunk_size=chunk_size, vocab_size=self.vocab_size, weights=weights)

    def empty(self, student: Tensor) -> dict[str, Tensor]:
        zero = student.sum() * 0.0  # keeps the graph (DDP needs every rank to run backward)
        return {"loss": zero}
