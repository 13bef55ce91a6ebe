"""The teacher signal of a teacher with another tokenizer: spans of the same text, rows to compare.

An `AlignedSignal` is what a cross-tokenizer teacher source (`distill.models.teacher_sources.
AlignedTokenTeacher`, or a store's `StoredAlignedTeacher`) hands a method for one batch: the
teacher's rows over its own tokenization of the batch's text (live hidden states, or stored top-k
log-probs), the span alignment (`distill.data.align`), and the maps from student token positions
to the student's valid loss rows. Nothing N x V or Q x Vt is stored: the
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
from distill.losses.sparse import sparse_to_dense

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
class HiddenTeacherRows:
    """A live teacher's rows: final hidden states (B, Lt, Ht) and head (Vt, Ht); logits on demand."""

    hidden: Tensor
    head: Tensor
    vocab: int

    def logits(self, positions: Tensor) -> Tensor:
        """(n, Vt) logits at flattened (b * Lt + position) indices, without gradient."""
        with torch.no_grad():
            return self.hidden.reshape(-1, self.hidden.shape[-1])[positions] @ self.head[:self.vocab].t()

    def token_logp(self, positions: Tensor, tokens: Tensor) -> Tensor:
        """(n,) log p(token) at those positions."""
        return torch.log_softmax(self.logits(positions).float(), dim=-1).gather(1, tokens[:, None]).squeeze(1)


@dataclass
class StoredTeacherRows:
    """A teacher-signal store's rows: top-k log-probs (R, k) at ids (R, k), log tail mass (R,), and the
    exact log-prob of the actual next token (R,); `row_of` maps flattened (b * Lt + position) to R."""

    ids: Tensor
    logp: Tensor
    tail: Tensor
    token: Tensor
    row_of: Tensor
    vocab: int

    def _rows(self, positions: Tensor) -> Tensor:
        rows = self.row_of[positions]
        if bool((rows < 0).any()):
            raise ValueError("a stored teacher row the loss needs is not in the store")
        return rows

    def logits(self, positions: Tensor) -> Tensor:
        """(n, Vt) log-probabilities: the stored top-k, the tail spread evenly over the other ids."""
        r = self._rows(positions)
        return sparse_to_dense(self.ids[r], self.logp[r], self.tail[r], self.vocab).float()

    def token_logp(self, positions: Tensor, tokens: Tensor) -> Tensor:
        return self.token[self._rows(positions)].float()


@dataclass
class AlignedSignal(TeacherSignal):
    """The teacher at a batch, aligned to the student's valid rows through spans of shared text.

    Attributes:
        n_rows: the student's valid next-token positions N (the rows of the student hidden states).
        student_ids: (B, T) the student batch's input ids.
        student_row: (B, T) index into the N valid rows of the position *at* token p (it predicts
            token p + 1), or -1 where that position takes no loss.
        teacher: the teacher's rows (`HiddenTeacherRows` live, `StoredTeacherRows` from a store).
        teacher_ids: (B, Lt) teacher input ids; teacher_valid (B, Lt) real (non-padding) tokens.
        spans: (S, 7) long: example, s_first, s_last (student batch positions), t_first, t_last
            (indices into teacher_ids), bytes, characters; token ranges inclusive.
        teacher_vocab: logits compared on the teacher side (its tokenizer's size).
        vocab_map: the tokenizer pair's `VocabularyMap`.
    """

    n_rows: int
    student_ids: Tensor
    student_row: Tensor
    teacher: Any
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
        """(n, Vt) teacher logits (or log-probs) at flattened (b * Lt + position) indices, without gradient."""
        return self.teacher.logits(flat_positions)

    def teacher_token_logp(self, flat_positions: Tensor, tokens: Tensor) -> Tensor:
        """(n,) the teacher's log-prob of `tokens` at those positions (exact also from a store)."""
        return self.teacher.token_logp(flat_positions, tokens)


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

    Per example, the student rows predicting its loss tokens (in order) pair up by position with the
    teacher rows predicting its tokens from the one that starts the span of the student's first loss
    token (with plain text: both sides' token 1, nothing predicts token 0; after a prompt: both
    sides' first completion token). Each pair is a one-row "span".
    """
    s_row, t_valid = signal.student_row.tolist(), signal.teacher_valid.tolist()
    lt = signal.teacher_ids.shape[1]
    s_ids, t_ids = signal.student_ids.tolist(), signal.teacher_ids.tolist()
    spans_of: dict[int, list] = {}
    for row in signal.spans.tolist():
        spans_of.setdefault(int(row[0]), []).append(row)
    cols: dict[str, list] = {k: [] for k in ("s", "st", "t", "tt", "ex")}
    for b in range(len(s_row)):
        student = [(r, s_ids[b][p + 1], p + 1) for p, r in enumerate(s_row[b][:-1]) if r >= 0]
        if not student:
            continue
        first = student[0][2]
        span = next((sp for sp in spans_of.get(b, []) if sp[1] <= first <= sp[2]), None)
        if span is None:
            continue
        teacher = [(b * lt + p - 1, t_ids[b][p]) for p in range(max(span[3], 1), lt) if t_valid[b][p]]
        for (r, s_tok, _), (q, t_tok) in zip(student, teacher):
            cols["s"].append(r), cols["st"].append(s_tok), cols["t"].append(q), cols["tt"].append(t_tok)
            cols["ex"].append(b)
    n = len(cols["s"])
    arange, ones = torch.arange(n), torch.ones(n, dtype=torch.bool)
    long = lambda key: torch.tensor(cols[key], dtype=torch.long)  # noqa: E731
    return SpanRows(long("s"), long("st"), arange, ones, long("t"), long("tt"), arange.clone(), ones.clone(),
                    torch.zeros(n, dtype=torch.long), long("ex"), torch.zeros(n, dtype=torch.long))
