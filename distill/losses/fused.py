"""Token-level distillation without ever materialising the N x V logit matrix (the Cut Cross-Entropy idea).

`fused_linear_divergence` takes hidden states and output-projection weights instead of logits.
It walks the tokens in chunks; for each chunk it builds the chunk x V logits, evaluates the
divergence (the very same function as the dense path, with reduction="sum") and its gradient with
respect to those logits, then folds that into the gradients of the hidden states (chunk x H) and of
the head weight (accumulated in place, V x H). The gradients are computed in the forward pass and
only scaled in the backward pass, so the compute equals one dense forward + backward while at most
one chunk of logits (and its few softmax buffers) is alive at a time. The teacher comes in as one
`TeacherSignal` (`distill.losses.signal`: a live teacher's hidden states, dense logits, stored
top-k targets, ...) and the divergence as a registered name or config (`distill.losses.registry`);
the loss never asks which source it has. Forward KL, the common case, skips autograd: the KL
entry's closed form (value and gradient p_s - p_t, `distill.losses.kl_grad`) is provided by each
chunk, also straight from stored top-k targets without densifying them. Masked positions are
dropped before the first chunk, so they contribute exactly zero to values and gradients whatever
their logits hold.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.losses.divergences import kl_terms
from distill.losses.kl_grad import cross_entropy_with_grad
from distill.losses.registry import Divergence, DivergenceConfig, divergence_config, get_divergence
from distill.losses.signal import TeacherSignal

LOGIT_BUDGET_BYTES = 256 * 2 ** 20  # memory for one chunk's logits and their softmax / gradient buffers
# cross-tokenizer losses and teacher-only passes: a larger chunk, because a skinny (rows x H) @ (H x V)
# product re-reads the whole V x H head per chunk (measured on 2 cores, V = 262k, H = 640, 1,024 rows:
# 32-row chunks 14.8 s, 128-row 6.4 s, 256-row 5.8 s, one 1,024-row product 4.3 s). 128 rows at V = 262k:
# a whole GOLD step on Gemma-3 took 20 s / 2.8 GiB peak with 128-row chunks, 21 s / 3.5 GiB with 256, 23 s / 2.4 GiB with 64
WIDE_LOGIT_BUDGET_BYTES = 1024 * 2 ** 20
BUFFERS_PER_LOGIT = 8               # float32 chunk x V tensors alive at once (measured: logits, log-softmaxes, probs, grads)


class FusedLoss(NamedTuple):
    """loss: the differentiable objective kd_weight * divergence + ce_weight * ce;
    divergence, ce: the detached parts (ce is None without ce_labels); count: valid tokens."""

    loss: Tensor
    divergence: Tensor
    ce: Tensor | None
    count: Tensor


def default_chunk_size(vocab_size: int, budget_bytes: int = LOGIT_BUDGET_BYTES) -> int:
    """Tokens per chunk so that the chunk's float32 logit buffers fit `budget_bytes` (a 262k vocab gets 1/8 of a 32k one)."""
    return max(1, budget_bytes // (vocab_size * 4 * BUFFERS_PER_LOGIT))


def chunk_bounds(n: int, chunk_size: int) -> list[tuple[int, int]]:
    """[(start, end)] covering range(n); the last chunk may be shorter."""
    return [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]


@dataclass
class _Spec:
    divergence: Divergence
    options: dict[str, Any]
    temperature: float
    chunk_size: int
    normalizer: Any
    vocab: int
    kd_weight: float
    ce_weight: float
    weights: Tensor | None


def _work_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 when any input is float64, else float32 (half and bfloat16 compute in float32)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


ChunkObjective = Callable[[Tensor, int, int], tuple[Tensor, Tensor]]
"""(logits of rows [start, end) (n, V), start, end) -> (loss parts (k,) detached, d(weighted loss)/d(logits) (n, V))."""


class _FusedRows(torch.autograd.Function):
    """The chunked engine: logits of one chunk of rows at a time, their gradient folded into the
    hidden states' and the head's in the forward pass, only scaled in the backward pass."""

    @staticmethod
    def forward(ctx, hidden: Tensor, head: Tensor, objective: ChunkObjective, bounds: list[tuple[int, int]],
                vocab: int, part_weights: tuple[float, ...]) -> tuple[Tensor, Tensor]:
        work = _work_dtype(hidden, head)
        grad_hidden = torch.zeros_like(hidden, dtype=work) if hidden.requires_grad else None
        grad_head = torch.zeros_like(head, dtype=work) if head.requires_grad else None
        parts = hidden.new_zeros(len(part_weights), dtype=work)
        vocab_head = head[:vocab]
        for start, end in bounds:
            h = hidden[start:end]
            logits = (h.to(head.dtype) @ vocab_head.t()).to(work)
            chunk_parts, grad_logits = objective(logits, start, end)
            parts += chunk_parts.to(work)
            if grad_hidden is not None:  # in the head's dtype: casting a bf16 head up would copy V x H per chunk
                grad_hidden[start:end] = (grad_logits.to(head.dtype) @ vocab_head).to(work)
            if grad_head is not None:  # in place: autograd would allocate a second V x H tensor per chunk
                grad_head[:vocab].addmm_(grad_logits.t().to(work), h.to(work))
        ctx.save_for_backward(grad_hidden, grad_head)
        ctx.dtypes = (hidden.dtype, head.dtype)
        loss = sum(w * parts[i] for i, w in enumerate(part_weights)) if part_weights else parts.sum() * 0
        ctx.mark_non_differentiable(parts)
        return loss, parts

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss: Tensor, _grad_parts: Tensor):
        grad_hidden, grad_head = ctx.saved_tensors
        # scaled in place: a second V x H tensor would double the loss's largest buffer (so, like
        # Liger's fused losses, one backward per forward; retain_graph=True is not supported)
        out_hidden = None if grad_hidden is None else grad_hidden.mul_(grad_loss).to(ctx.dtypes[0])
        out_head = None if grad_head is None else grad_head.mul_(grad_loss).to(ctx.dtypes[1])
        return out_hidden, out_head, None, None, None, None


def fused_rows(hidden: Tensor, head: Tensor, objective: ChunkObjective, *, bounds: list[tuple[int, int]],
               vocab_size: int | None = None, part_weights: tuple[float, ...] = (1.0,)) -> tuple[Tensor, Tensor]:
    """Any per-chunk objective over the logits hidden @ head.T of row chunks `bounds`, never all rows at once.

    Returns (loss, parts): `parts` (k,) are the objective's detached parts summed over chunks,
    `loss` = sum_k part_weights[k] * parts[k] carries the gradient, which the objective gives per
    chunk (d loss / d logits). The cross-tokenizer losses use it with chunks of whole spans.
    """
    return _FusedRows.apply(hidden, head, objective, bounds, vocab_size or head.shape[0], tuple(part_weights))


def autograd_objective(fn: Callable[[Tensor, int, int], Tensor], n_parts: int = 1,
                       part_weights: tuple[float, ...] = (1.0,)) -> ChunkObjective:
    """A `ChunkObjective` from a differentiable `fn(logits, start, end) -> parts (k,)` (its gradient by autograd)."""
    def objective(logits: Tensor, start: int, end: int) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            x = logits.detach().requires_grad_(True)
            parts = fn(x, start, end).reshape(n_parts)
            loss = sum(w * parts[i] for i, w in enumerate(part_weights))
            (grad,) = torch.autograd.grad(loss, x) if loss.requires_grad else (torch.zeros_like(x),)
        return parts.detach(), grad
    return objective


def _chunk_objective(logits: Tensor, teacher: TeacherSignal | None, labels: Tensor | None, spec: _Spec,
                     start: int, end: int) -> tuple[Tensor, Tensor]:
    """([divergence sum, ce sum], d(objective)/d(chunk logits)) for one chunk, already divided by the normaliser."""
    coef = torch.ones(end - start, dtype=logits.dtype, device=logits.device)
    if spec.weights is not None:
        coef = coef * spec.weights[start:end].to(logits.dtype)
    coef = coef / spec.normalizer
    div = ce = logits.new_zeros(())
    grad = None
    if teacher is not None and spec.kd_weight:
        chunk = teacher.chunk(start, end, spec.vocab, spec.temperature)
        per, grad = spec.divergence.value_and_grad(logits, chunk, spec.temperature, **spec.options)
        div = (per.to(logits.dtype) * coef).sum()
        grad = grad.to(logits.dtype).mul_((spec.kd_weight * coef)[:, None])
    if labels is not None:
        per_ce, grad_ce = cross_entropy_with_grad(logits, labels[start:end])
        ce = (per_ce * coef).sum()
        if spec.ce_weight:
            grad_ce.mul_((spec.ce_weight * coef)[:, None])
            grad = grad_ce if grad is None else grad.add_(grad_ce)
    return torch.stack([div, ce]), torch.zeros_like(logits) if grad is None else grad


def fused_linear_divergence(student_hidden: Tensor, student_head: Tensor, teacher: TeacherSignal | None = None, *,
                            divergence: str | DivergenceConfig = "kl", temperature: float = 1.0,
                            mask: Tensor | None = None, ce_labels: Tensor | None = None, chunk_size: int | None = None,
                            kd_weight: float = 1.0, ce_weight: float = 1.0, reduction: str = "mean",
                            normalizer: float | Tensor | None = None, vocab_size: int | None = None,
                            weights: Tensor | None = None, **divergence_options: Any) -> FusedLoss:
    """A token divergence (and optional CE) from hidden states, chunked over tokens, forward and backward.

    Args:
        student_hidden: (N, H) final hidden states of the student (any float dtype; grads flow).
        student_head: (V, H) student output-embedding weight (grads flow).
        teacher: the teacher at the same N positions, a `TeacherSignal` (`HiddenSignal(hidden,
            head)` for a live teacher, `TopKSignal` from a store, `DenseSignal(logits)`); None for
            CE only.
        divergence: a registered name (`distill.losses.registry.DIVERGENCES`: kl, reverse_kl, jsd,
            skew_kl, skew_reverse_kl, tvd, akl, taid) with its options as keyword arguments
            (beta=..., alpha=..., mu=..., t=...), or a `DivergenceConfig`.
        temperature: softmax temperature of the divergence (no T^2 factor, like the dense functions).
        mask: (N,) bool, tokens that count (default: all).
        ce_labels: (N,) int64 next-token labels; adds cross-entropy on the student (labels -100 or
            masked positions are ignored).
        chunk_size: tokens per chunk; None picks it from a 256 MiB logit budget and the vocabulary size.
        kd_weight, ce_weight: weights of the two parts in `loss`.
        reduction: "mean" divides by the number of valid tokens (0 if none), "sum" does not.
        normalizer: overrides the divisor of "mean" (e.g. the global token count across ranks and
            micro-batches).
        vocab_size: compare only the first `vocab_size` logits (padded embedding matrices).
        weights: (N,) per-token weights multiplying both parts (per-prompt weights, policy-gradient
            coefficients); the normaliser is unchanged.

    Returns:
        FusedLoss(loss, divergence, ce, count): `loss` = kd_weight * divergence + ce_weight * ce
        carries the gradient; `divergence` and `ce` are its detached parts (ce None without
        ce_labels); `count` the number of valid tokens. The gradients equal those of the dense
        computation on (student_hidden @ student_head.T).
    """
    cfg = divergence_config(divergence, **divergence_options)
    n, vocab = student_hidden.shape[0], vocab_size or student_head.shape[0]
    mask = torch.ones(n, dtype=torch.bool, device=student_hidden.device) if mask is None else mask.to(torch.bool)
    if kd_weight and teacher is None:
        raise ValueError("kd_weight > 0 needs a teacher signal (or pass kd_weight=0 for cross-entropy only)")
    if teacher is not None and len(teacher) != n:
        raise ValueError(f"the teacher signal has {len(teacher)} positions, the student {n}")
    count = mask.sum()
    if normalizer is None:
        normalizer = count.clamp_min(1).float() if reduction == "mean" else 1.0
    if not bool(mask.all()):  # drop masked rows up front: exact zeros in values and gradients, whatever they hold
        index = mask.nonzero().squeeze(1)
        student_hidden = student_hidden[index]
        teacher = teacher.select(index) if teacher is not None else None
        ce_labels = ce_labels[index] if ce_labels is not None else None
        weights = weights[index] if weights is not None else None
    spec = _Spec(get_divergence(cfg), cfg.options(), temperature, chunk_size or default_chunk_size(vocab), normalizer,
                 vocab, kd_weight if teacher is not None else 0.0, ce_weight if ce_labels is not None else 0.0,
                 None if weights is None else weights.detach())
    def objective(logits: Tensor, start: int, end: int) -> tuple[Tensor, Tensor]:
        return _chunk_objective(logits, teacher, ce_labels, spec, start, end)
    loss, parts = fused_rows(student_hidden, student_head, objective, bounds=chunk_bounds(len(student_hidden), spec.chunk_size),
                             vocab_size=vocab, part_weights=(spec.kd_weight, spec.ce_weight))
    return FusedLoss(loss, parts[0], parts[1] if ce_labels is not None else None, count)


@torch.no_grad()
def token_statistics(hidden: Tensor, head: Tensor, teacher: TeacherSignal, *, vocab_size: int,
                     chunk_size: int | None = None, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """Per token, without gradient: (student entropy / log V, reverse KL(p_s || p_t)), each (N,).

    Chunked like the loss (never N x V). Used to pick the informative tokens of a rollout (TIP).
    """
    n = hidden.shape[0]
    entropy, divergence = hidden.new_zeros(n, dtype=torch.float32), hidden.new_zeros(n, dtype=torch.float32)
    for start, end in chunk_bounds(n, chunk_size or default_chunk_size(vocab_size)):
        logits = (hidden[start:end] @ head[:vocab_size].t()).float()
        s = F.log_softmax(logits / temperature, dim=-1)
        s_pair, t_pair = teacher.chunk(start, end, vocab_size, temperature).distributions(logits, temperature)
        divergence[start:end] = kl_terms(s_pair, t_pair)
        entropy[start:end] = -(s.exp() * s).sum(-1) / torch.log(torch.tensor(float(vocab_size)))
    return entropy, divergence.clamp_min(0)


@torch.no_grad()
def teacher_token_logprobs(teacher: TeacherSignal, labels: Tensor, *, vocab_size: int,
                           chunk_size: int | None = None) -> Tensor:
    """log p_teacher(labels_n) at T = 1 for each of the N positions, chunked; (N,) float32."""
    out = torch.empty(len(labels), dtype=torch.float32, device=labels.device)
    for start, end in chunk_bounds(len(labels), chunk_size or default_chunk_size(vocab_size)):
        logp = teacher.chunk(start, end, vocab_size, 1.0).teacher_logp(1.0)
        out[start:end] = logp.gather(1, labels[start:end, None].long()).squeeze(1).float()
    return out


@torch.no_grad()
def token_logprobs(hidden: Tensor, head: Tensor, labels: Tensor, vocab: int, chunk_size: int | None = None) -> Tensor:
    """log p(labels_n | position n) for (N, H) hidden states and a (V, H) head, chunked; (N,) float32, no gradient."""
    out = hidden.new_empty(len(labels), dtype=torch.float32)
    for start, end in chunk_bounds(len(labels), chunk_size or default_chunk_size(vocab)):
        logp = F.log_softmax((hidden[start:end] @ head[:vocab].t()).float(), dim=-1)
        out[start:end] = logp.gather(1, labels[start:end, None]).squeeze(1)
    return out
