"""What cross-tokenizer methods share: span rows, chunks of whole spans, normalisation, the CE term.

A cross-tokenizer method reads the `AlignedSignal` its context's teacher source gives (the same
`signal(batch, mask)` call as every LM method) and defines one function: `span_loss(student_logits,
teacher_logits, chunk) -> (G,)` on the rows of one chunk of whole spans. The base class gathers the
student rows, computes teacher logits one chunk at a time (the teacher's vocabulary, 262k for Gemma,
is never materialised for all positions), and runs them through the chunked engine
(`distill.losses.fused.fused_rows`), whose gradient reaches the student's hidden states and head.

Normalisation (`normalize`): "span" is the mean over the batch's aligned spans (ALM, X-Token);
"sequence" the mean over each sequence's spans, then over sequences (TRL's GOLD / ULD). Under
gradient accumulation the Trainer weighs micro-batches by `count` = spans or sequences.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

import torch
from torch import Tensor

from distill.config import option
from distill.data.token_stream import next_token_targets
from distill.losses.aligned import AlignedSignal, SpanRows, VocabularyMap, positional_rows, span_chunks, span_rows
from distill.losses.fused import (WIDE_LOGIT_BUDGET_BYTES, autograd_objective, default_chunk_size, fused_linear_divergence,
                                  fused_rows)
from distill.methods.base import MethodConfig
from distill.methods.lm_base import LMMethod


@dataclass(kw_only=True)
class CrossTokenizerConfig(MethodConfig):
    """Fields every cross-tokenizer method has."""

    kd_weight: float = option(1.0, min=0.0, help="weight of the cross-tokenizer distillation term")
    ce_weight: float = option(0.0, min=0.0, help="weight of the student's next-token cross-entropy")
    normalize: Literal["span", "sequence"] = option("span", help="span: mean over aligned spans; sequence: mean per "
                                                    "sequence, then over sequences (TRL GOLD)")
    chunk_size: Optional[int] = option(None, min=1, help="rows per logit chunk (default: from the larger vocabulary)")


@dataclass
class SpanChunk:
    """The rows of one chunk of whole spans, span indices local to the chunk (0..G-1)."""

    n_spans: int
    student_span: Tensor
    student_base: Tensor
    student_tokens: Tensor
    teacher_span: Tensor
    teacher_base: Tensor
    teacher_tokens: Tensor
    weights: Tensor  # (G,) the spans' normalisation weights
    vocab_map: VocabularyMap | None  # what the two vocabularies share (built by the task, see vocabulary_needs)


class TeacherView:
    """The teacher's side of one chunk: its logits (computed once, when first asked for) and the
    log-probs of its actual tokens (exact also when the teacher comes from a store)."""

    def __init__(self, signal: AlignedSignal, positions: Tensor, tokens: Tensor, dtype: torch.dtype):
        self.signal, self.positions, self.tokens, self.dtype = signal, positions, tokens, dtype
        self._logits: Tensor | None = None

    @property
    def logits(self) -> Tensor:
        if self._logits is None:
            self._logits = self.signal.teacher_logits(self.positions).to(self.dtype)
        return self._logits

    def probs(self, temperature: float = 1.0) -> Tensor:
        """softmax(logits / T), the cached logits released (one teacher-wide buffer less per chunk)."""
        logits = self.logits
        self._logits = None
        return torch.softmax(logits if temperature == 1.0 else logits / temperature, dim=-1)

    def token_logp(self) -> Tensor:
        return self.signal.teacher_token_logp(self.positions, self.tokens).to(self.dtype)


class CrossTokenizerMethod(LMMethod):
    """Base of methods whose teacher has another tokenizer (teacher source: an aligned teacher)."""

    cross_tokenizer = True
    alignment = "bayesian"  # which rows a span reads (distill.losses.aligned); "positional": ULD's position pairs

    @classmethod
    def vocabulary_needs(cls, cfg: CrossTokenizerConfig) -> set[str]:
        """Parts of the tokenizer pair's `VocabularyMap` this method reads: "matched", "projection"."""
        return set()

    def span_loss(self, student_logits: Tensor, teacher: TeacherView, chunk: SpanChunk) -> Tensor:
        """(G,) the method's loss per span of the chunk (`teacher.logits`, `teacher.token_logp` for its rows)."""
        raise NotImplementedError

    def rows(self, signal: AlignedSignal) -> SpanRows:
        return positional_rows(signal) if self.alignment == "positional" else span_rows(signal, self.alignment)

    def count(self, batch: dict[str, Tensor]) -> int:
        super().count(batch)  # throughput bookkeeping (valid tokens)
        if self.cfg.normalize == "sequence":
            return int(batch["input_ids"].shape[0])
        mask = next_token_targets(batch)[1]
        return self.rows(self.ctx.teacher.structure(batch, mask)).n_spans

    def span_weights(self, rows: SpanRows, batch_size: int) -> Tensor:
        if self.cfg.normalize == "span":
            return torch.full((rows.n_spans,), 1.0 / max(rows.n_spans, 1))
        per_example = torch.bincount(rows.span_example, minlength=batch_size).clamp_min(1).float()
        return 1.0 / (per_example[rows.span_example] * batch_size)

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        student, signal, labels = self.hidden_states(batch)
        rows = self.rows(signal)
        parts: dict[str, Tensor] = {"spans": torch.tensor(float(rows.n_spans))}
        loss = student.sum() * 0.0
        if rows.n_spans:
            kd = self.distill(student, signal, rows, self.span_weights(rows, batch["input_ids"].shape[0]))
            loss, parts[self.cfg.name] = loss + self.cfg.kd_weight * kd, kd.detach()
        if self.cfg.ce_weight and len(labels):
            out = fused_linear_divergence(student, self.head, None, ce_labels=labels, kd_weight=0.0, ce_weight=1.0,
                                          chunk_size=self.cfg.chunk_size, vocab_size=self.vocab_size)
            loss, parts["ce"] = loss + self.cfg.ce_weight * out.loss, out.ce
        return {"loss": loss, **parts}

    def distill(self, student: Tensor, signal: AlignedSignal, rows: SpanRows, weights: Tensor) -> Tensor:
        """sum_spans w_span * span_loss, chunked over whole spans; differentiable in the student."""
        size = self.cfg.chunk_size or default_chunk_size(max(self.vocab_size, signal.teacher_vocab), WIDE_LOGIT_BUDGET_BYTES)
        chunks = span_chunks(rows, size)
        by_start = {c[2]: c for c in chunks}

        def chunk_loss(logits: Tensor, start: int, end: int) -> Tensor:
            k0, k1, s0, s1, t0, t1 = by_start[start]
            teacher = TeacherView(signal, rows.teacher_rows[t0:t1], rows.teacher_tokens[t0:t1], logits.dtype)
            chunk = SpanChunk(k1 - k0, rows.student_span[s0:s1] - k0, rows.student_base[s0:s1],
                              rows.student_tokens[s0:s1], rows.teacher_span[t0:t1] - k0, rows.teacher_base[t0:t1],
                              rows.teacher_tokens[t0:t1], weights[k0:k1].to(logits.dtype), signal.vocab_map)
            return (self.span_loss(logits, teacher, chunk) * chunk.weights).sum().reshape(1)
        loss, _ = fused_rows(student[rows.student_rows], self.head, autograd_objective(chunk_loss),
                             bounds=[(c[2], c[3]) for c in chunks], vocab_size=self.vocab_size)
        return loss
