"""Held-out evaluation of causal LMs: perplexity and divergence to the teacher, chunked like training."""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from distill.data.token_stream import next_token_targets
from distill.errors import DataError
from distill.losses.fused import fused_linear_divergence


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
    was_training = student_body.training
    student_body.eval()
    sums = torch.zeros(3, dtype=torch.float64)  # nll, divergence, tokens
    head = student_body.head_weight
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
    student_body.train(was_training)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
    nll, div, tokens = sums.tolist()
    if tokens == 0:
        raise DataError("the held-out data has no token to evaluate on (every position is padding or masked)")
    result = {"nll": nll / tokens, "perplexity": math.exp(min(nll / tokens, 50.0)), "tokens": tokens}
    if teacher is not None:
        result[f"{divergence}_to_teacher"] = div / tokens
    return result
