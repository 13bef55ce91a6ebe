"""The teacher signal of a teacher with another tokenizer: spans of the same text, rows to compare.

An `AlignedSignal` is what a cross-tokenizer teacher source (`distill.models.teacher_sources.
AlignedTokenTeacher`) hands a method for one batch: the teacher's final hidden states over its own
tokenization of the batch's text, the span alignment (`distill.data.align`), and the maps from
student token positions to the student's valid loss rows. Nothing N x V or Q x Vt is stored: the
losses compute logits for one chunk of whole spans at a time (`span_chunks`, `fused_rows`).

`span_rows(signal, mode)` lists, span by span, the rows a span-level loss reads:
  - mode "bayesian": the rows that predict each token of the span (position p - 1 for token p),
    the span's last row carrying the full distribution (the chain rule: P(t_1..t_m) =
    P(t_1) ... P(t_m | t_<m));
  - mode "observed": TRL GOLD's default, the rows *at* the span's tokens (position p), the first
    one carrying the full distribution, each later one contributing the probability it gives the
    token at its own position (reproduced as TRL computes it; not a chain rule).
A span is used only when every row it needs exists on both sides: the student's first token
(nothing predicts it) and tokens without a loss label (prompts, padding) drop their span.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from distill.losses.signal import TeacherChunk, TeacherSignal

MODES = ("bayesian", "observed")


@dataclass
class VocabularyMap:
    """What two vocabularies share, built once per tokenizer pair.

    Attributes:
        matched_student, matched_teacher: (K,) ids whose vocabulary strings are identical on both sides
            (TRL GOLD's exact raw-string match), in the same order.
        projection: (Vs, Vt) sparse row-stochastic matrix mapping the student's vocabulary onto the
            teacher's (X-Token), or None until a method asks for it.
    """

    matched_student: Tensor
    matched_teacher: Tensor
    projection: Tensor | None = None


@dataclass
class AlignedSignal(TeacherSignal):
    """The teacher at a batch, aligned to the student's valid rows through spans of shared text.

    Attributes:
        n_rows: the student's valid next-token positions N (the rows of the student hidden states).
        student_ids: (B, T) the student batch's input ids.
        student_row: (B, T) index into the N valid rows of the position *at* token p (it predicts
            token p + 1), or -1 where that position takes no loss.
        teacher_hidden: (B, Lt, Ht) teacher final hidden states (no gradient); teacher_head (Vt, Ht).
        teacher_ids: (B, Lt) teacher input ids; teacher_valid (B, Lt) real (non-padding) tokens.
        spans: (S, 7) long: example, s_first, s_last (student batch positions), t_first, t_last
            (indices into teacher_ids), bytes, characters; token ranges inclusive.
        teacher_vocab: logits compared on the teacher side (its tokenizer's size).
        vocab_map: the tokenizer pair's `VocabularyMap`.
    """

    n_rows: int
    student_ids: Tensor
    student_row: Tensor
    teacher_hidden: Tensor
    teacher_head: Tensor
    teacher_ids: Tensor
    teacher_valid: Tensor
    spans: Tensor
    teacher_vocab: int
    vocab_map: VocabularyMap | None = None
    meta: dict[str, Any] = field(default_factory=lambda: {"source": "aligned"})

    def __len__(self) -> int:
        return self.n_rows

    def _chunk(self, start: int, end: int, vocab_size: int) -> TeacherChunk:
        raise ValueError("this teacher has another tokenizer: its distributions are over another vocabulary; use a "
                         "cross-tokenizer method (uld, gold, alm, xtoken)")

    def select(self, index: Tensor) -> "AlignedSignal":
        raise ValueError("an aligned teacher signal is read span by span (span_rows), not by row selection")

    def teacher_logits(self, flat_positions: Tensor) -> Tensor:
        """(n, Vt) teacher logits at flattened (b * Lt + position) indices, without gradient."""
        with torch.no_grad():
            hidden = self.teacher_hidden.reshape(-1, self.teacher_hidden.shape[-1])[flat_positions]
            return hidden @ self.teacher_head[:self.teacher_vocab].t()


@dataclass
class SpanRows:
    """Rows of the spans a loss reads, span after span (see the module docstring).

    Student rows index the N valid rows; teacher rows are flattened (b * Lt + position) indices.
    `*_span` give each row's span (0..S-1, sorted); `*_base` mark the row holding the full
    distribution ("bayesian": the last, "observed": the first); `*_tokens` the token each row
    scores. `span_bytes`, `span_chars` and `span_example` (S,) describe the spans kept.
    """

    student_rows: Tensor
    student_tokens: Tensor
    student_span: Tensor
    student_base: Tensor
    teacher_rows: Tensor
    teacher_tokens: Tensor
    teacher_span: Tensor
    teacher_base: Tensor
    span_bytes: Tensor
    span_example: Tensor
    span_chars: Tensor | None = None

    @property
    def n_spans(self) -> int:
        return len(self.span_bytes)


def _span_positions(first: int, last: int, mode: str) -> tuple[list[int], list[int], int]:
    """(positions whose rows the span reads, tokens each scores, index of the base row) for tokens first..last."""
    tokens = list(range(first, last + 1))
    if mode == "bayesian":
        return [p - 1 for p in tokens], tokens, len(tokens) - 1
    return tokens, tokens, 0


def span_rows(signal: AlignedSignal, mode: str = "bayesian") -> SpanRows:
    """The rows of every usable span of `signal` (module docstring); spans needing a missing row are dropped."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {MODES}")
    lt = signal.teacher_ids.shape[1]
    s_row, t_valid = signal.student_row.tolist(), signal.teacher_valid.tolist()
    s_ids, t_ids = signal.student_ids.tolist(), signal.teacher_ids.tolist()
    cols: dict[str, list] = {k: [] for k in ("sr", "st", "ss", "sb", "tr", "tt", "ts", "tb", "bytes", "ex", "chars")}
    for b, s0, s1, t0, t1, nbytes, nchars in signal.spans.tolist():
        s_pos, s_tok, s_base = _span_positions(s0, s1, mode)
        t_pos, t_tok, t_base = _span_positions(t0, t1, mode)
        rows = [s_row[b][p] if 0 <= p < len(s_row[b]) else -1 for p in s_pos]
        if min(rows) < 0 or min(t_pos) < 0 or max(t_pos) >= lt or not all(t_valid[b][p] for p in t_pos):
            continue
        k = len(cols["bytes"])
        cols["sr"] += rows
        cols["st"] += [s_ids[b][p] for p in s_tok]
        cols["ss"] += [k] * len(rows)
        cols["sb"] += [i == s_base for i in range(len(rows))]
        cols["tr"] += [b * lt + p for p in t_pos]
        cols["tt"] += [t_ids[b][p] for p in t_tok]
        cols["ts"] += [k] * len(t_pos)
        cols["tb"] += [i == t_base for i in range(len(t_pos))]
        cols["bytes"].append(nbytes)
        cols["chars"].append(nchars)
        cols["ex"].append(b)
    long = lambda key: torch.tensor(cols[key], dtype=torch.long)  # noqa: E731
    flag = lambda key: torch.tensor(cols[key], dtype=torch.bool)  # noqa: E731
    return SpanRows(long("sr"), long("st"), long("ss"), flag("sb"), long("tr"), long("tt"), long("ts"), flag("tb"),
                    long("bytes"), long("ex"), long("chars"))


def span_chunks(rows: SpanRows, max_rows: int) -> list[tuple[int, int, int, int, int, int]]:
    """Chunks of whole spans: [(span_start, span_end, s_start, s_end, t_start, t_end)], each holding at
    most `max_rows` rows on either side (a single span larger than that is a chunk of its own)."""
    s_counts = torch.bincount(rows.student_span, minlength=rows.n_spans).tolist()
    t_counts = torch.bincount(rows.teacher_span, minlength=rows.n_spans).tolist()
    chunks, k0, s0, t0, ns, nt = [], 0, 0, 0, 0, 0
    for k in range(rows.n_spans):
        if k > k0 and (ns + s_counts[k] > max_rows or nt + t_counts[k] > max_rows):
            chunks.append((k0, k, s0, s0 + ns, t0, t0 + nt))
            k0, s0, t0, ns, nt = k, s0 + ns, t0 + nt, 0, 0
        ns, nt = ns + s_counts[k], nt + t_counts[k]
    if rows.n_spans:
        chunks.append((k0, rows.n_spans, s0, s0 + ns, t0, t0 + nt))
    return chunks


def positional_rows(signal: AlignedSignal) -> SpanRows:
    """The original ULD's alignment: the i-th prediction of each side, truncated to the shorter side.

    Per example, the student rows predicting its tokens 1, 2, ... and the teacher rows predicting its
    text tokens 1, 2, ... (after its BOS; token 0 is skipped on both sides, the student cannot
    predict it) pair up by position; each pair is a one-row "span".
    """
    s_row, t_valid = signal.student_row.tolist(), signal.teacher_valid.tolist()
    lt = signal.teacher_ids.shape[1]
    first_text = {int(row[0]): int(row[3]) for row in reversed(signal.spans.tolist())}  # teacher BOS offset
    pairs_s, pairs_t, tok_s, tok_t, example = [], [], [], [], []
    s_ids, t_ids = signal.student_ids.tolist(), signal.teacher_ids.tolist()
    for b in range(len(s_row)):
        student = [(r, s_ids[b][p + 1]) for p, r in enumerate(s_row[b][:-1]) if r >= 0]
        start = first_text.get(b, 1) + 1
        teacher = [(b * lt + p - 1, t_ids[b][p]) for p in range(start, lt) if t_valid[b][p]]
        for (r, s_tok), (q, t_tok) in zip(student, teacher):
            pairs_s.append(r), tok_s.append(s_tok), pairs_t.append(q), tok_t.append(t_tok), example.append(b)
    n = len(pairs_s)
    arange, ones = torch.arange(n), torch.ones(n, dtype=torch.bool)
    long = lambda x: torch.tensor(x, dtype=torch.long)  # noqa: E731
    return SpanRows(long(pairs_s), long(tok_s), arange, ones, long(pairs_t), long(tok_t), arange.clone(), ones.clone(),
                    torch.zeros(n, dtype=torch.long), long(example))
