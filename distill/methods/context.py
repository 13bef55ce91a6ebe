"""Typed task contexts: what a method may know about the task it is set up for.

A task builds one context per stage and hands it to the method; methods read fields, never an
untyped dict. The teacher reaches methods as a *source* that turns a batch into the teacher
signal (`distill.models.teacher_sources`): a live teacher, a teacher-signal store, and later an
aligned teacher of another tokenizer all look the same here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

from torch import Tensor, nn

from distill.losses.signal import TeacherSignal


class LogitSource(Protocol):
    """A classification teacher's logits (B, C) for a batch of the task (live forward or stored lookup)."""

    def logits(self, batch: dict[str, Any]) -> Tensor: ...


class EmbeddingSource(Protocol):
    """A sentence-embedding teacher: (B, D_t) float32 embeddings for a batch of texts (live or stored)."""

    def embeddings(self, batch: dict[str, Any]) -> Tensor: ...


class TokenTeacher(Protocol):
    """A causal-LM teacher: the teacher signal at a batch's valid next-token positions."""

    def signal(self, batch: dict[str, Tensor], mask: Tensor) -> TeacherSignal:
        """`mask` (B, T-1) marks the positions (in row-major order) the signal must cover."""


@dataclass
class TaskContext:
    """Fields every stage has: steps_per_epoch, epochs and num_train (training examples)."""

    num_train: int = 0
    steps_per_epoch: int = 0
    epochs: int = 0


@dataclass
class ClassificationContext(TaskContext):
    """Attributes:
        num_classes, label_smoothing: the stage's basics.
        teacher_logits: the teacher's logits for a training batch (live, or from a store), or None.
        example_input: a small input batch (normalized), to size adapters by a probe forward.
        train_labels: (num_train,) labels of the training split, indexed by batch["index"] (CRD).
        plain_train_batches: () -> iterator of unaugmented, unshuffled training batches (class
            centres, teacher statistics).
        held_out_batches: (epoch) -> iterator of batches of the held-out split (`data.hold_out`), or None.
        extra_teachers: frozen teachers beyond `teacher` (multi-teacher methods).
    """

    num_classes: int = 0
    label_smoothing: float = 0.0
    teacher_logits: LogitSource | None = None
    example_input: Any = None
    train_labels: Any = None
    plain_train_batches: Callable[[], Iterator[dict[str, Any]]] | None = None
    held_out_batches: Callable[[int], Iterator[dict[str, Any]]] | None = None
    extra_teachers: list = field(default_factory=list)


@dataclass
class LMContext(TaskContext):
    """Attributes:
        student_body: the student without its head, (input_ids, attention_mask) -> hidden (B, T, H);
            possibly DDP-wrapped (its `.module` then holds `head_weight`).
        teacher: the `TokenTeacher` source, or None (CE only).
        vocab_size: logits compared (the tokenizer's size when heads are padded).
        tokenizer: the student's tokenizer.
    """

    student_body: nn.Module | None = None
    teacher: TokenTeacher | None = None
    vocab_size: int = 0
    tokenizer: Any = None


@dataclass
class EmbeddingContext(TaskContext):
    """Attributes:
        teacher: the `EmbeddingSource`, or None (label-only objectives).
        teacher_dim: width of the teacher's embeddings.
        num_classes: classes of `labelled_batches` (0 when there are none).
        labelled_batches: () -> iterator of unshuffled sentence batches with a "label" (B,) field,
            for methods that fit something on labelled data before training (LELP), or None.
    """

    teacher: EmbeddingSource | None = None
    teacher_dim: int = 0
    num_classes: int = 0
    labelled_batches: Callable[[], Iterator[dict[str, Any]]] | None = None
