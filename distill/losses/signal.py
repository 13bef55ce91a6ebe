"""The teacher signal of token losses: one type, whatever the teacher's source.

A `TeacherSignal` holds the teacher's next-token distributions at the N positions a loss is
taken on (the student's valid positions, in order) and hands them out one chunk of positions at
a time, so the N x V matrix never exists. Every source produces one:

  - `HiddenSignal(hidden (N, H), head (V, H))`: a live teacher's final hidden states and output
    weight; each chunk's logits are computed on demand, without gradient;
  - `DenseSignal(logits (N, V))`: logits or log-probabilities already computed;
  - `TopKSignal(ids, logp, tail, temperature, tail="uniform" | "bucket")`: the teacher-signal
    store's top-k log-probs plus the log of the remaining mass, captured at `temperature`.

A chunk (`TeacherChunk`) offers what the losses need, and nothing about where it came from:
  - `distributions(student_logits, T) -> (s_logp, t_logp)`: the two distributions on a common
    support, differentiable in the student (full vocabulary; k + 1 buckets for the bucket tail);
  - `forward_kl_with_grad(student_logits, T) -> (per, grad)`: forward KL with its gradient in
    closed form where one exists (dense, uniform tail), by autograd otherwise;
  - `teacher_logp(T)`: the teacher's own log-probs over the vocabulary (n, V).
Registered divergences (`distill.losses.registry`) consume `distributions`; the KL entry uses the
closed form. A new source (an aligned teacher of another tokenizer, say) is a new subclass.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.losses.divergences import forward_kl_terms
from distill.losses.kl_grad import forward_kl_with_grad, sparse_forward_kl_with_grad
from distill.losses.registry import autograd_value_and_grad
from distill.losses.sparse import sparse_to_dense


class TeacherChunk(ABC):
    """The teacher's distributions at n consecutive positions of a signal."""

    @abstractmethod
    def distributions(self, student_logits: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
        """(student log-probs, teacher log-probs) on a common support; student side differentiable."""

    @abstractmethod
    def teacher_logp(self, temperature: float) -> Tensor:
        """(n, V) teacher log-probabilities over the whole vocabulary."""

    def forward_kl_with_grad(self, student_logits: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
        """(per (n,), d per / d student_logits (n, V)) of KL(p_t || p_s); autograd unless a subclass knows better."""
        return autograd_value_and_grad(forward_kl_terms, student_logits, self, temperature)


@dataclass
class DenseChunk(TeacherChunk):
    """Dense teacher logits (or log-probs) (n, V), re-tempered by the loss temperature."""

    logits: Tensor

    def _teacher(self, like: Tensor) -> Tensor:
        return self.logits[:, :like.shape[-1]].to(like.dtype)

    def distributions(self, student_logits: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
        s = F.log_softmax(student_logits / temperature, dim=-1)
        return s, F.log_softmax(self._teacher(student_logits) / temperature, dim=-1)

    def teacher_logp(self, temperature: float) -> Tensor:
        return F.log_softmax(_at_least_float32(self.logits) / temperature, dim=-1)

    def forward_kl_with_grad(self, student_logits: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
        return forward_kl_with_grad(student_logits, self._teacher(student_logits), temperature)


@dataclass
class _StoredChunk(TeacherChunk):
    """Stored top-k log-probs (n, k) at `ids` (n, k) and the log tail mass (n,), never re-tempered."""

    ids: Tensor
    logp: Tensor
    tail: Tensor
    vocab_size: int

    def teacher_logp(self, temperature: float) -> Tensor:
        """The uniform-tail reading of the stored targets over the whole vocabulary."""
        return sparse_to_dense(self.ids, self.logp, self.tail, self.vocab_size)


class UniformTailChunk(_StoredChunk):
    """The tail mass spread evenly over the other V - k ids."""

    def distributions(self, student_logits: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
        s = F.log_softmax(student_logits / temperature, dim=-1)
        return s, self.teacher_logp(temperature).to(s.dtype)

    def forward_kl_with_grad(self, student_logits: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
        return sparse_forward_kl_with_grad(student_logits, self.ids, self.logp, self.tail, temperature)


class BucketChunk(_StoredChunk):
    """The tail kept as one outcome: both sides become (k + 1)-way distributions [top-k ids..., the rest]."""

    def distributions(self, student_logits: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
        s_logp = F.log_softmax(student_logits / temperature, dim=-1)
        ids = self.ids.long()
        s_top = s_logp.gather(-1, ids)
        if ids.shape[-1] >= s_logp.shape[-1]:  # empty tail: a constant (logsumexp of nothing has a NaN gradient)
            s_rest = torch.full_like(s_top[:, :1], float("-inf"))
        else:
            s_rest = torch.logsumexp(s_logp.scatter(-1, ids, float("-inf")), dim=-1, keepdim=True)
        t = torch.cat([self.logp.to(s_logp.dtype), self.tail.to(s_logp.dtype).reshape(-1, 1)], dim=-1)
        return torch.cat([s_top, s_rest], dim=-1), t


def _at_least_float32(x: Tensor) -> Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


class TeacherSignal(ABC):
    """The teacher at N positions; see the module docstring.

    Attributes:
        temperature: the capture temperature when the signal cannot be re-tempered (a store), else None.
        meta: capture metadata (source, k, tail mode, ...), for logs and reports.
    """

    temperature: float | None = None
    meta: dict[str, Any]

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def _chunk(self, start: int, end: int, vocab_size: int) -> TeacherChunk: ...

    @abstractmethod
    def select(self, index: Tensor) -> "TeacherSignal":
        """The signal at positions `index` (a 1-D long tensor), in that order."""

    def chunk(self, start: int, end: int, vocab_size: int, temperature: float) -> TeacherChunk:
        """Positions [start, end) for a loss at `temperature` over the first `vocab_size` ids."""
        if self.temperature is not None and abs(temperature - self.temperature) > 1e-9:
            raise ValueError(f"the stored teacher was captured at temperature {self.temperature}; the loss asks for "
                             f"{temperature} (set the method's temperature to {self.temperature} or recapture)")
        return self._chunk(start, end, vocab_size)


@dataclass
class DenseSignal(TeacherSignal):
    """Teacher logits or log-probabilities (N, V), already computed."""

    logits: Tensor
    meta: dict[str, Any] = field(default_factory=lambda: {"source": "dense"})

    def __len__(self) -> int:
        return self.logits.shape[0]

    def _chunk(self, start: int, end: int, vocab_size: int) -> TeacherChunk:
        return DenseChunk(self.logits[start:end, :vocab_size].detach())

    def select(self, index: Tensor) -> "DenseSignal":
        return DenseSignal(self.logits[index], self.meta)


@dataclass
class HiddenSignal(TeacherSignal):
    """A live teacher's final hidden states (N, H) and output weight (V, H) (optionally a bias (V,));
    each chunk's logits are computed when asked for, without gradient."""

    hidden: Tensor
    head: Tensor
    bias: Tensor | None = None
    meta: dict[str, Any] = field(default_factory=lambda: {"source": "live"})

    def __len__(self) -> int:
        return self.hidden.shape[0]

    def _chunk(self, start: int, end: int, vocab_size: int) -> TeacherChunk:
        with torch.no_grad():
            logits = self.hidden[start:end] @ self.head[:vocab_size].t()
            if self.bias is not None:
                logits = logits + self.bias[:vocab_size]
        return DenseChunk(logits)

    def select(self, index: Tensor) -> "HiddenSignal":
        return HiddenSignal(self.hidden[index], self.head, self.bias, self.meta)


TAIL_MODES = ("uniform", "bucket")


@dataclass
class TopKSignal(TeacherSignal):
    """Stored teacher targets: top-k ids (N, k), their log-probs (N, k) and the log tail mass (N,),
    captured at `temperature`; `tail` chooses how the tail is compared (module docstring of
    `distill.losses.sparse`). Losses must run at the capture temperature."""

    ids: Tensor
    logp: Tensor
    tail_logp: Tensor
    temperature: float = 1.0
    tail: str = "uniform"
    meta: dict[str, Any] = field(default_factory=lambda: {"source": "store"})

    def __post_init__(self) -> None:
        if self.tail not in TAIL_MODES:
            raise ValueError(f"tail={self.tail!r}: expected one of {TAIL_MODES}")

    def __len__(self) -> int:
        return self.ids.shape[0]

    def _chunk(self, start: int, end: int, vocab_size: int) -> TeacherChunk:
        kind = BucketChunk if self.tail == "bucket" else UniformTailChunk
        return kind(self.ids[start:end], self.logp[start:end], self.tail_logp[start:end], vocab_size)

    def select(self, index: Tensor) -> "TopKSignal":
        return TopKSignal(self.ids[index], self.logp[index], self.tail_logp[index], self.temperature, self.tail, self.meta)

