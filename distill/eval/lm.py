"""Held-out evaluation of causal LMs: perplexity and divergence to the teacher, chunked like training;
across tokenizers, bits per byte and per-character perplexity on the same text for both models."""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from distill.data.token_stream import next_token_targets
from distill.errors import DataError
from distill.losses.aligned import span_rows
from distill.losses.fused import (WIDE_LOGIT_BUDGET_BYTES, chunk_bounds, default_chunk_size, fused_linear_divergence,
                                  token_logprobs)
from distill.modes import eval_mode


@torch.no_grad()
def evaluate_lm(student_body: nn.Module, teacher: Any, batches: Iterable[dict[str, Tensor]], *, vocab_size: int,
                chunk_size: int | None = None, divergence: str = "kl") -> dict[str, float]:
    """{"perplexity", "nll", "tokens"} and, with a teacher, {"kl_to_teacher"} over every valid next-token position.

    `teacher` is a teacher source (`signal(batch, mask)`: a live teacher, a store's targets), or
    None. The teacher signal is compared at temperature 1 (a store's capture temperature when it
    has one). Sums are all-reduced under torch.distributed, so every rank returns the global
    figures. Raises DataError when the batches hold no valid position: a perplexity over nothing
    would read as a perfect 1.00.
    """
    sums = torch.zeros(3, dtype=torch.float64)  # nll, divergence, tokens
    head = student_body.head_weight
    with eval_mode(student_body):
        for batch in batches:
            labels, mask = next_token_targets(batch)
            if not mask.any():
                continue
            signal = teacher.signal(batch, mask) if teacher is not None else None
            s = student_body(batch["input_ids"], batch.get("attention_mask"))[:, :-1][mask]
            temperature = signal.temperature if signal is not None and signal.temperature is not None else 1.0
            out = fused_linear_divergence(s, head, signal, divergence=divergence, ce_labels=labels[mask],
                                          kd_weight=1.0 if signal is not None else 0.0, reduction="sum",
                                          chunk_size=chunk_size, vocab_size=vocab_size, temperature=temperature)
            sums += torch.tensor([float(out.ce), float(out.divergence), float(mask.sum())], dtype=torch.float64)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
    nll, div, tokens = sums.tolist()
    if tokens == 0:
        raise DataError("the held-out data has no token to evaluate on (every position is padding or masked)")
    result = {"nll": nll / tokens, "perplexity": math.exp(min(nll / tokens, 50.0)), "tokens": tokens}
    if teacher is not None:
        result[f"{divergence}_to_teacher"] = div / tokens
    return result


@torch.no_grad()
def evaluate_aligned(student_body: nn.Module, teacher: Any, batches: Iterable[dict[str, Tensor]], *, vocab_size: int,
                     chunk_size: int | None = None) -> dict[str, float]:
    """Tokenizer-fair figures on the same text for the student and a teacher of another tokenizer.

    Over the aligned spans of the held-out batches (every span whose tokens both models predict):
    bits per byte (summed NLL / (ln 2 x UTF-8 bytes)) and per-character perplexity for the student
    and the teacher, and the mean absolute difference of their span log-likelihoods (nats per
    span); plus the student's own token-level perplexity over every valid position. No KL over
    token ids: the vocabularies differ. Sums are all-reduced under torch.distributed.
    """
    sums = torch.zeros(8, dtype=torch.float64)  # nll, tokens, student span logp, teacher span logp, |diff|, bytes, chars, spans
    head = student_body.head_weight
    with eval_mode(student_body):
        for batch in batches:
            labels, mask = next_token_targets(batch)
            if not mask.any():
                continue
            signal = teacher.signal(batch, mask)
            student = student_body(batch["input_ids"], batch.get("attention_mask"))[:, :-1][mask]
            out = fused_linear_divergence(student, head, None, ce_labels=labels[mask], kd_weight=0.0, reduction="sum",
                                          chunk_size=chunk_size, vocab_size=vocab_size)
            rows = span_rows(signal, "bayesian")
            s_span, t_span = _span_logp(student, head, signal, rows, vocab_size, chunk_size)
            sums += torch.tensor([float(out.ce), float(mask.sum()), float(s_span.sum()), float(t_span.sum()),
                                  float((s_span - t_span).abs().sum()), float(rows.span_bytes.sum()),
                                  float(rows.span_chars.sum()), float(rows.n_spans)], dtype=torch.float64)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
    nll, tokens, s_logp, t_logp, diff, n_bytes, n_chars, spans = sums.tolist()
    if tokens == 0 or n_bytes == 0:
        raise DataError("the held-out data has no aligned text to evaluate on")
    return {"nll": nll / tokens, "perplexity": math.exp(min(nll / tokens, 50.0)), "tokens": tokens,
            "bits_per_byte": -s_logp / (math.log(2) * n_bytes), "teacher_bits_per_byte": -t_logp / (math.log(2) * n_bytes),
            "char_perplexity": math.exp(min(-s_logp / max(n_chars, 1), 50.0)),
            "teacher_char_perplexity": math.exp(min(-t_logp / max(n_chars, 1), 50.0)),
            "span_logp_mae": diff / max(spans, 1), "spans": spans, "bytes": n_bytes}


def _span_logp(student: Tensor, head: Tensor, signal: Any, rows: Any, vocab: int,
               chunk_size: int | None) -> tuple[Tensor, Tensor]:
    """(S,) span log-likelihoods of the student and the teacher (teacher logits one chunk at a time)."""
    s_tok = token_logprobs(student[rows.student_rows], head, rows.student_tokens, vocab, chunk_size)
    t_tok = torch.empty(len(rows.teacher_rows), dtype=torch.float32)
    size = chunk_size or default_chunk_size(signal.teacher_vocab, WIDE_LOGIT_BUDGET_BYTES)
    for start, end in chunk_bounds(len(rows.teacher_rows), size):
        t_tok[start:end] = signal.teacher_token_logp(rows.teacher_rows[start:end], rows.teacher_tokens[start:end])
    zeros = torch.zeros(rows.n_spans, dtype=torch.float32)
    return zeros.index_add(0, rows.student_span, s_tok), zeros.clone().index_add(0, rows.teacher_span, t_tok)
