"""What sentence-embedding methods share: the batch formats, student / teacher embeddings, counting.

The student is a `distill.models.encoders.TextEncoder` ((input_ids, attention_mask) -> (B, D)); the
teacher reaches methods only as the context's `EmbeddingSource` (`LiveEmbeddings` running a frozen
teacher encoder on the texts, or `StoredEmbeddings` looking cached embeddings up by index), so no
method knows where the teacher's embeddings come from.

Batch formats (a "sentences" batch is the unit; the others nest it):
  sentences  {"input_ids": (B, T), "attention_mask": (B, T)  the student's tokens (`student.tokenize`),
              "text": list of B str  (a live teacher tokenizes these with its own tokenizer),
              "index": (B,) long     (a stored teacher's row of each text), optional "label": (B,) long}
  pairs      {"query": sentences, "positive": sentences}                     row i of each is one pair
  triples    {"query": sentences, "positive": sentences, "negative": sentences}
  lists      {"query": sentences (B), "candidates": sentences (B * N, row-major: query i's N candidates,
              the positive first), optional "candidate_mask": (B, N) bool of real candidates}
A method names the one it reads in its `batch_format` class attribute (the task builds batches from it).
"""
from __future__ import annotations

from typing import Any

from torch import Tensor

from distill.errors import ConfigError
from distill.methods.base import Method
from distill.methods.context import EmbeddingContext

BATCH_FORMATS = ("sentences", "pairs", "triples", "lists")


class EmbeddingMethod(Method):
    """Base of sentence-embedding methods (task: embedding). `batch_format`: one of BATCH_FORMATS."""

    task = "embedding"
    batch_format = "sentences"
    ctx: EmbeddingContext

    def count(self, batch: dict[str, Any]) -> int:
        """Rows (sentences, pairs, triples or lists) of the batch: its weight under accumulation."""
        part = batch["query"] if "query" in batch else batch
        return int(part["input_ids"].shape[0])

    def embed(self, part: dict[str, Any]) -> Tensor:
        """(B, D_s) student embeddings of a sentences batch."""
        return self.student(part["input_ids"], part["attention_mask"])

    def teacher_embeddings(self, part: dict[str, Any]) -> Tensor:
        """(B, D_t) float32 teacher embeddings of a sentences batch, from the context's source."""
        return self.ctx.teacher.embeddings(part)

    def embedding_pair(self, part: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """(student, teacher) embeddings of a sentences batch. The teacher first: a live teacher's no-grad
        temporaries are freed before the student's activations (kept for backward) exist."""
        teacher = self.teacher_embeddings(part)
        return self.embed(part), teacher

    def require_teacher_width(self) -> None:
        """Methods comparing embeddings coordinate by coordinate need the student at the teacher's width."""
        width = getattr(self.student, "dim", None)
        if self.ctx.teacher_dim and width is not None and width != self.ctx.teacher_dim:
            raise ConfigError(f"method.name = {self.cfg.name!r} compares embeddings directly: the student outputs "
                              f"{width} dimensions but the teacher {self.ctx.teacher_dim}; give the student a projection")
