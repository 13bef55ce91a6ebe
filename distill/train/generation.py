"""Batched sampling with a KV cache, and turning prompts + completions into training examples.

Sampling has its own fields (temperature, top-p, max new tokens), never the loss temperature.
Prompts are left-padded for generation; position ids follow the attention mask so padding never
shifts a row. Generated rows are re-packed into ordinary examples (prompt tokens labelled -100,
the completion up to and including its first EOS labelled, nothing after it), so on-policy
batches are collated and masked exactly like offline ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from distill.config import option
from distill.data.text import IGNORE
from distill.modes import eval_mode


@dataclass(kw_only=True)
class SamplingConfig:
    """How completions are sampled (separate from any loss temperature)."""

    temperature: float = option(1.0, min=0.0, help="sampling temperature (0 = greedy)")
    top_p: float = option(1.0, min=0.0, max=1.0, min_exclusive=True, help="nucleus sampling mass")
    max_new_tokens: int = option(64, min=1, help="longest completion")


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """(input_ids, attention_mask), both (B, P), prompts right-aligned."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.as_tensor(p, dtype=torch.long)
        mask[i, width - len(p):] = 1
    return ids, mask


def pick_tokens(logits: Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None) -> Tensor:
    """(B, V) next-token logits -> (B,) token ids: greedy, or temperature + top-p sampling."""
    if cfg.temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / cfg.temperature, dim=-1)
    if cfg.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        keep = sorted_p.cumsum(dim=-1) - sorted_p < cfg.top_p  # the smallest prefix reaching top_p
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


@torch.no_grad()
def sample_completions(model: nn.Module, prompts: list[list[int]], cfg: SamplingConfig, *, eos_id: int, pad_id: int,
                       vocab_size: int | None = None, generator: torch.Generator | None = None) -> list[list[int]]:
    """Completion token ids per prompt (ending with EOS if one was sampled), one batched pass with a KV cache.

    Works with any causal LM whose forward takes (input_ids, attention_mask, position_ids,
    past_key_values, use_cache) and returns .logits and .past_key_values (Hugging Face models);
    a model returning no cache is re-run on the whole sequence each step.
    """
    with eval_mode(model):
        return _decode(model, prompts, cfg, eos_id, pad_id, vocab_size, generator)


def _decode(model: nn.Module, prompts: list[list[int]], cfg: SamplingConfig, eos_id: int, pad_id: int,
            vocab_size: int | None, generator: torch.Generator | None) -> list[list[int]]:
    """`sample_completions`' token loop, on a model already in eval mode."""
    ids, mask = left_pad(prompts, pad_id)
    done = torch.zeros(len(prompts), dtype=torch.bool)
    out: list[list[int]] = [[] for _ in prompts]
    past, step_ids = None, ids
    for _ in range(cfg.max_new_tokens):
        positions = (mask.cumsum(dim=1) - 1).clamp_min(0)
        cur_positions = positions if past is None else positions[:, -step_ids.shape[1]:]
        result = model(input_ids=step_ids, attention_mask=mask, position_ids=cur_positions, past_key_values=past,
                       use_cache=True)
        logits = result.logits[:, -1]
        if vocab_size is not None:
            logits = logits[:, :vocab_size]
        token = pick_tokens(logits, cfg, generator).masked_fill(done, pad_id)
        for i in torch.nonzero(~done).flatten().tolist():
            out[i].append(int(token[i]))
        done |= token == eos_id
        mask = torch.cat([mask, (~done | (token == eos_id)).long()[:, None]], dim=1)
        ids = torch.cat([ids, token[:, None]], dim=1)
        past = getattr(result, "past_key_values", None)
        step_ids = token[:, None] if past is not None else ids
        if bool(done.all()):
            break
    return out


def completion_example(prompt: list[int], completion: list[int], eos_id: int) -> dict[str, Any]:
    """Prompt (labels -100) + completion up to and including its first EOS (labelled); the rest dropped."""
    if eos_id in completion:
        completion = completion[:completion.index(eos_id) + 1]
    return {"input_ids": list(prompt) + list(completion), "labels": [IGNORE] * len(prompt) + list(completion),
            "prompt_length": len(prompt)}
