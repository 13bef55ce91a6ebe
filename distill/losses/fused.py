"""Token-level distillation without ever materialising the N x V logit matrix (the Cut Cross-Entropy idea).

`fused_linear_divergence` takes hidden states and output-projection weights instead of logits.
It walks the tokens in chunks; for each chunk it builds the chunk x V logits, evaluates the
divergence (the very same function as the dense path, with reduction="sum") and its gradient with
respect to those logits, then folds that into the gradients of the hidden states (chunk x H) and of
the head weight (accumulated in place, V x H). The gradients are computed in the forward pass and
only scaled in the backward pass, so the compute equals one dense forward + backward while at most
one chunk of logits (and its few softmax buffers) is alive at a time. Forward KL, the common case,
skips autograd: its value and gradient p_s - p_t are written out in `distill.losses.kl_grad`
(equal to the autograd path, tested), also straight from stored top-k targets without densifying
them.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.losses.kl_grad import forward_kl_with_grad, sparse_forward_kl_with_grad
from distill.losses.sparse import BucketTarget, SparseTargets, UniformTailTarget
from distill.losses.token import DIVERGENCES

LOGIT_BUDGET_BYTES = 256 * 2 ** 20  # memory for one chunk's logits and their softmax / gradient buffers
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


Teacher = Tensor | UniformTailTarget | BucketTarget | None  # one chunk's teacher: dense logits (n, V) or stored top-k
TeacherChunk = Callable[[int, int], Teacher]  # (start, end) -> the teacher for those tokens


class _FusedDivergence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: Tensor, head: Tensor, teacher_chunk: TeacherChunk, mask: Tensor, labels: Tensor | None,
                spec: dict) -> tuple[Tensor, Tensor, Tensor]:
        grad_hidden = torch.zeros_like(hidden, dtype=torch.float32) if hidden.requires_grad else None
        grad_head = torch.zeros_like(head, dtype=torch.float32) if head.requires_grad else None
        div_total = hidden.new_zeros((), dtype=torch.float32)
        ce_total = hidden.new_zeros((), dtype=torch.float32)
        for start, end in chunk_bounds(hidden.shape[0], spec["chunk_size"]):
            m = mask[start:end]
            if not bool(m.any()):
                continue  # an all-masked chunk contributes exactly nothing (and no NaN)
            teacher = teacher_chunk(start, end) if spec["kd_weight"] else None  # CE only: no teacher needed
            weights = None if spec["weights"] is None else spec["weights"][start:end]
            div, ce, grad_logits = _chunk_loss(hidden[start:end], head, teacher, m,
                                               None if labels is None else labels[start:end], spec, weights)
            div_total += div
            ce_total += ce
            if grad_hidden is not None:  # in the head's dtype: .float() on a bf16 head would copy V x H per chunk
                grad_hidden[start:end] = (grad_logits.to(head.dtype) @ head[:grad_logits.shape[1]]).float()
            if grad_head is not None:  # in place: autograd would allocate a second V x H tensor per chunk
                grad_head[:grad_logits.shape[1]].addmm_(grad_logits.t(), hidden[start:end].float())
        ctx.save_for_backward(grad_hidden, grad_head)
        ctx.dtypes = (hidden.dtype, head.dtype)
        loss = spec["kd_weight"] * div_total + spec["ce_weight"] * ce_total
        ctx.mark_non_differentiable(div_total, ce_total)
        return loss, div_total, ce_total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss: Tensor, _grad_div: Tensor, _grad_ce: Tensor):
        grad_hidden, grad_head = ctx.saved_tensors
        # scaled in place: a second V x H tensor would double the loss's largest buffer (so, like
        # Liger's fused losses, one backward per forward; retain_graph=True is not supported)
        out_hidden = None if grad_hidden is None else grad_hidden.mul_(grad_loss).to(ctx.dtypes[0])
        out_head = None if grad_head is None else grad_head.mul_(grad_loss).to(ctx.dtypes[1])
        return out_hidden, out_head, None, None, None, None


def _weighted_sum(per_position: Tensor, mask: Tensor, weights: Tensor | None) -> Tensor:
    values = per_position.masked_fill(~mask, 0.0)
    return (values * weights).sum() if weights is not None else values.sum()


def _chunk_loss(hidden: Tensor, head: Tensor, teacher: Teacher, mask: Tensor, labels: Tensor | None,
                spec: dict, weights: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(divergence sum, ce sum, d(weighted objective)/d(chunk logits)), all already divided by the normaliser."""
    vocab = spec["vocab"] or head.shape[0]
    logits = (hidden @ head[:vocab].t()).float()
    if teacher is not None and spec["name"] == "kl" and not spec["kwargs"] and not isinstance(teacher, BucketTarget):
        div, grad_logits = _closed_form_kl(logits, teacher, mask, spec, weights)
        if labels is None:
            return div, logits.new_zeros(()), grad_logits
        _, ce, grad_ce = _autograd_loss(logits, None, mask, labels, {**spec, "kd_weight": 0.0}, weights)
        return div, ce, grad_logits.add_(grad_ce)
    if isinstance(teacher, UniformTailTarget):
        teacher = teacher.dense_logits(spec["temperature"])
    return _autograd_loss(logits, teacher, mask, labels, spec, weights)


def _closed_form_kl(logits: Tensor, teacher: Tensor | UniformTailTarget, mask: Tensor, spec: dict,
                    weights: Tensor | None) -> tuple[Tensor, Tensor]:
    """Forward KL with its gradient written out (`distill.losses.kl_grad`): no autograd over chunk x V tensors."""
    temperature = spec["temperature"]
    if isinstance(teacher, UniformTailTarget):
        per, grad = sparse_forward_kl_with_grad(logits, teacher.ids, teacher.logp, teacher.tail, temperature)
    else:
        per, grad = forward_kl_with_grad(logits, teacher[:, :logits.shape[1]], temperature)
    coef = mask.to(per.dtype) if weights is None else mask.to(per.dtype) * weights
    per = torch.where(mask, per, torch.zeros_like(per))  # masked rows may hold NaN (all -inf teachers)
    div = (per * coef).sum() / spec["normalizer"]
    if not bool(mask.all()):
        grad.masked_fill_(~mask[:, None], 0.0)
    return div, grad.mul_((spec["kd_weight"] * coef / spec["normalizer"])[:, None])


def _autograd_loss(logits: Tensor, teacher: Tensor | BucketTarget | None, mask: Tensor, labels: Tensor | None,
                   spec: dict, weights: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Any divergence (and CE) on one chunk's logits, its gradient by autograd."""
    with torch.enable_grad():
        logits = logits.detach().requires_grad_(True)
        div = logits.new_zeros(())
        if isinstance(teacher, BucketTarget):  # sparse top-k + one tail bucket: compare (k + 1)-way distributions
            s_bucket, t_bucket = teacher.pair(logits, spec["temperature"])
            per = spec["fn"](s_bucket, t_bucket, temperature=1.0, mask=mask, reduction="none", **spec["kwargs"])
            div = _weighted_sum(per, mask, weights) / spec["normalizer"]
        elif teacher is not None:
            per = spec["fn"](logits, teacher[:, :logits.shape[1]], temperature=spec["temperature"], mask=mask,
                             reduction="none", **spec["kwargs"])
            div = _weighted_sum(per, mask, weights) / spec["normalizer"]
        ce = logits.new_zeros(())
        if labels is not None:
            per = F.cross_entropy(logits, labels.masked_fill(~mask, -100), ignore_index=-100, reduction="none")
            ce = _weighted_sum(per, mask, weights) / spec["normalizer"]
        objective = spec["kd_weight"] * div + spec["ce_weight"] * ce
        (grad_logits,) = torch.autograd.grad(objective, logits)
    return div.detach(), ce.detach(), grad_logits


def fused_linear_divergence(student_hidden: Tensor, student_head: Tensor, teacher_hidden: Tensor | None = None,
                            teacher_head: Tensor | None = None, *, divergence: str = "kl", temperature: float = 1.0,
                            mask: Tensor | None = None, ce_labels: Tensor | None = None, chunk_size: int | None = None,
                            kd_weight: float = 1.0, ce_weight: float = 1.0, reduction: str = "mean",
                            normalizer: float | Tensor | None = None, vocab_size: int | None = None,
                            teacher_chunk: TeacherChunk | None = None, sparse_teacher: SparseTargets | None = None,
                            weights: Tensor | None = None, **divergence_kwargs) -> FusedLoss:
    """A token divergence (and optional CE) from hidden states, chunked over tokens, forward and backward.

    Args:
        student_hidden: (N, H) final hidden states of the student (any float dtype; grads flow).
        student_head: (V, H) student output-embedding weight (grads flow).
        teacher_hidden: (N, Ht) and teacher_head: (V, Ht): the teacher's, used without gradient.
            Alternatively pass `sparse_teacher` (top-k log-probs + tail mass from the teacher-signal
            store, densified or bucketed one chunk at a time), or any `teacher_chunk(start, end)`
            returning the teacher's logits or log-probabilities for those tokens.
        divergence: a name in `distill.losses.token.DIVERGENCES` (kl, reverse_kl, jsd, skew_kl,
            skew_reverse_kl, tvd, akl, taid); extra keyword arguments (beta, alpha, t, ...) go to it.
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
        FusedLoss(loss, divergence, ce, count); `loss` carries the gradient. The gradients equal
        those of the dense computation on (student_hidden @ student_head.T).
    """
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence={divergence!r}: expected one of {sorted(DIVERGENCES)}")
    n, vocab = student_hidden.shape[0], vocab_size or student_head.shape[0]
    mask = torch.ones(n, dtype=torch.bool, device=student_hidden.device) if mask is None else mask.to(torch.bool)
    count = mask.sum()
    if normalizer is None:
        normalizer = count.clamp_min(1).float() if reduction == "mean" else 1.0
    if sparse_teacher is not None:
        teacher_chunk = lambda s, e: sparse_teacher.chunk(s, e, vocab, temperature)  # noqa: E731
    if teacher_chunk is None:
        if kd_weight and (teacher_hidden is None or teacher_head is None):
            raise ValueError("give teacher_hidden and teacher_head, or teacher_chunk")
        teacher_chunk = _dense_teacher(teacher_hidden, teacher_head, vocab) if kd_weight else (lambda s, e: None)
    spec = {"name": divergence, "fn": DIVERGENCES[divergence], "temperature": temperature, "kwargs": divergence_kwargs,
            "chunk_size": chunk_size or default_chunk_size(vocab), "normalizer": normalizer, "vocab": vocab,
            "kd_weight": kd_weight, "ce_weight": ce_weight if ce_labels is not None else 0.0,
            "weights": None if weights is None else weights.detach().float()}
    loss, div, ce = _FusedDivergence.apply(student_hidden, student_head, teacher_chunk, mask, ce_labels, spec)
    return FusedLoss(loss, div, ce if ce_labels is not None else None, count)


def _dense_teacher(hidden: Tensor, head: Tensor, vocab: int) -> TeacherChunk:
    def chunk(start: int, end: int) -> Tensor:
        with torch.no_grad():
            return hidden[start:end] @ head[:vocab].t()
    return chunk


@torch.no_grad()
def token_statistics(hidden: Tensor, head: Tensor, teacher_chunk: TeacherChunk, *, vocab_size: int,
                     chunk_size: int | None = None, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """Per token, without gradient: (student entropy / log V, reverse KL(p_s || p_t)), each (N,).

    Chunked like the loss (never N x V). Used to pick the informative tokens of a rollout (TIP).
    """
    from distill.losses.divergences import kl_terms
    n = hidden.shape[0]
    entropy, divergence = hidden.new_zeros(n, dtype=torch.float32), hidden.new_zeros(n, dtype=torch.float32)
    for start, end in chunk_bounds(n, chunk_size or default_chunk_size(vocab_size)):
        s = F.log_softmax((hidden[start:end] @ head[:vocab_size].t()).float() / temperature, dim=-1)
        teacher = teacher_chunk(start, end)
        if isinstance(teacher, UniformTailTarget):
            teacher = teacher.dense_logits(temperature)
        if isinstance(teacher, BucketTarget):
            s_b, t = teacher.pair(s, 1.0)
            divergence[start:end] = kl_terms(s_b, t)
        else:
            divergence[start:end] = kl_terms(s, F.log_softmax(teacher[:, :vocab_size].float() / temperature, dim=-1))
        entropy[start:end] = -(s.exp() * s).sum(-1) / torch.log(torch.tensor(float(vocab_size)))
    return entropy, divergence.clamp_min(0)
