"""Teacher sources: a frozen teacher, or a store's batch fields, turned into what methods read.

Classification: `LiveLogits` runs the teacher on batch["x"]; `StoredLogits` looks logits up by
batch["index"]. Causal LM: `LiveTokenTeacher` runs the frozen teacher body and returns a
`HiddenSignal` at the valid positions; `StoredTokenTeacher` reads the top-k fields a store batch
carries and returns a `TopKSignal`. Methods see `logits(batch)` / `signal(batch, mask)` only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from distill.losses.signal import HiddenSignal, TeacherSignal, TopKSignal


@dataclass
class LiveLogits:
    """A live classification teacher (a `FrozenTeacher`)."""

    teacher: nn.Module

    def logits(self, batch: dict[str, Any]) -> Tensor:
        return self.teacher(batch["x"])


@dataclass
class StoredLogits:
    """Stored teacher logits (num_train, C), looked up by the batch's sample indices."""

    table: Tensor

    def logits(self, batch: dict[str, Any]) -> Tensor:
        return self.table[batch["index"]]


@dataclass
class LiveTokenTeacher:
    """A live causal-LM teacher: `body` is a FrozenTeacher around an `LMBody`."""

    body: nn.Module

    @property
    def model(self) -> nn.Module:
        return self.body.model

    def signal(self, batch: dict[str, Tensor], mask: Tensor) -> TeacherSignal:
        hidden = self.body(batch["input_ids"], batch.get("attention_mask"))[:, :-1][mask]
        return HiddenSignal(hidden, self.body.model.head_weight, meta={"source": "live"})


@dataclass
class StoredTokenTeacher:
    """Top-k targets a teacher-signal store batch carries (one row per valid position, in order)."""

    temperature: float
    tail: str = "uniform"
    k: int = 0

    def signal(self, batch: dict[str, Tensor], mask: Tensor) -> TeacherSignal:
        ids = batch["teacher_topk_ids"]
        if ids.shape[0] != int(mask.sum()):
            raise ValueError(f"the store batch carries {ids.shape[0]} teacher rows for {int(mask.sum())} valid positions")
        return TopKSignal(ids, batch["teacher_topk_logp"], batch["teacher_tail_logp"], self.temperature, self.tail,
                          meta={"source": "store", "k": self.k, "tail": self.tail})
