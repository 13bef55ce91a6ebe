"""Causal-LM data: training and held-out examples from the recipe, their fingerprint, held-out checks.

Both the runner and `distill cache` import this module (neither imports the other's internals),
so the import graph runs one way.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from distill.config import to_dict
from distill.data import hf_source
from distill.data.prompts import jsonl_prompts, text_prompts
from distill.data.subset import subset_indices
from distill.data.text import jsonl_examples, packed_text_blocks, text_fingerprint
from distill.errors import DataError
from distill.models.hf import tokenizer_hash
from distill.tasks.causal_lm import hf_data
from distill.tasks.causal_lm.schema import CausalLMRecipe
from distill.train.generation import completion_example

PROMPT_FORMATS = ("prompts", "text_prompts")
TEACHER_TOKENIZER = "teacher_tokenizer"  # subfolder of an aligned store holding the teacher's tokenizer


def with_pad_token(tokenizer: Any) -> Any:
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def student_tokenizer_source(cfg: CausalLMRecipe) -> str | None:
    """Where the student's tokenizer comes from: student.tokenizer, its model folder, else the teacher's."""
    return cfg.student.tokenizer or cfg.student.path or cfg.student.architecture or (cfg.teacher.path if cfg.teacher else None)


def random_subset(items: Any, size: int | None) -> Any:
    """`items` (a list or an array) restricted to `subset_indices`; all of them when size is None or too large."""
    if not size or size >= len(items):
        return items
    keep = subset_indices(len(items), size)
    return items[keep.numpy()] if isinstance(items, np.ndarray) else [items[int(i)] for i in keep]


def split_held_out(items: list, fraction: float) -> tuple[list, list]:
    """(train, held-out): the last round(n * fraction) items (at least one) are held out; none when fraction is 0."""
    if not fraction:
        return items, []
    cut = len(items) - max(1, int(round(len(items) * fraction)))
    return items[:cut], items[cut:]


def load_prompt_records(cfg: CausalLMRecipe, tokenizer: Any) -> tuple[list, list]:
    """(train, eval) prompt records {"prompt", "completion", "answer"} for on-policy training."""
    d = cfg.data
    if d.format == "prompts":
        def read(paths: list[str]) -> list:
            return [r for p in paths for r in jsonl_prompts(tokenizer, p, d.max_prompt_length)]
    else:
        def read(paths: list[str]) -> list:
            return text_prompts(tokenizer, paths, prompt_tokens=d.prompt_tokens, completion_tokens=d.completion_tokens,
                                column=d.column)
    if d.hf is not None:  # the same records from a dataset's rows (distill.tasks.causal_lm.hf_data)
        train = hf_data.prompt_records(d, tokenizer, d.hf.split)
        held = hf_data.prompt_records(d, tokenizer, d.hf.eval_split) if d.hf.eval_split else None
    else:
        train, held = read(d.paths), read(d.eval_paths) if d.eval_paths else None
    train, held = (train, held) if held is not None else split_held_out(train, d.eval_fraction)
    return random_subset(train, d.max_train_examples), random_subset(held, d.max_eval_examples)


def _packed(cfg: CausalLMRecipe, tokenizer: Any, paths: list[str], eval_fraction: float) -> dict[str, np.ndarray]:
    d = cfg.data
    settings = f"{d.block_size}|{d.eval_fraction}|{d.column}|{len(tokenizer)}|{tokenizer.eos_token_id}|{sorted(d.eval_paths)}"
    return packed_text_blocks(tokenizer, paths, block_size=d.block_size, eval_fraction=eval_fraction, column=d.column,
                              fingerprint=text_fingerprint(paths, tokenizer_hash(tokenizer) + settings))


def load_lm_data(cfg: CausalLMRecipe, tokenizer: Any) -> tuple[Any, Any]:
    """(train, eval) as packed int32 blocks (text) or lists of examples (jsonl, prompt formats)."""
    d = cfg.data
    if d.format in PROMPT_FORMATS:
        train, held = load_prompt_records(cfg, tokenizer)
        eos = tokenizer.eos_token_id
        return ([completion_example(r["prompt"], r["completion"], eos) for r in train],
                [completion_example(r["prompt"], r["completion"], eos) for r in held])
    if d.hf is not None:
        train, held = _hf_examples(cfg, tokenizer)
    elif d.format == "text":
        blocks = _packed(cfg, tokenizer, d.paths, 0.0 if d.eval_paths else d.eval_fraction)
        train, held = blocks["train"], blocks["eval"]
        if d.eval_paths:
            held = _packed(cfg, tokenizer, d.eval_paths, 0.0)["train"]
    else:
        train = [e for p in d.paths for e in jsonl_examples(tokenizer, p, d.max_length)]
        if d.eval_paths:
            held = [e for p in d.eval_paths for e in jsonl_examples(tokenizer, p, d.max_length)]
        else:
            train, held = split_held_out(train, d.eval_fraction)
    train, held = random_subset(train, d.max_train_examples), random_subset(held, d.max_eval_examples)
    if len(train) == 0:
        raise DataError(f"data {d.label()}: no training examples (texts shorter than one block of {d.block_size} tokens?)")
    return train, held


def _hf_examples(cfg: CausalLMRecipe, tokenizer: Any) -> tuple[Any, Any]:
    """(train, eval) of data.format text or jsonl from data.hf: eval_split, else held out as for files."""
    d, hf = cfg.data, cfg.data.hf
    if d.format == "text":
        settings = f"{d.block_size}|{len(tokenizer)}|{tokenizer.eos_token_id}|{tokenizer_hash(tokenizer)}"
        blocks = hf_data.packed_blocks(d, tokenizer, hf.split, 0.0 if hf.eval_split else d.eval_fraction, settings)
        held = hf_data.packed_blocks(d, tokenizer, hf.eval_split, 0.0, settings)["train"] if hf.eval_split else None
        return blocks["train"], blocks["eval"] if held is None else held
    train = hf_data.examples(d, tokenizer, hf.split)
    if hf.eval_split:
        return train, hf_data.examples(d, tokenizer, hf.eval_split)
    return split_held_out(train, d.eval_fraction)


def held_out_tokens(examples: Any) -> int:
    """Valid next-token positions in held-out examples (packed blocks, or examples with -100 labels)."""
    if isinstance(examples, np.ndarray):
        return int(examples.shape[0] * max(examples.shape[1] - 1, 0)) if examples.ndim == 2 else 0
    return sum(sum(1 for label in e["labels"][1:] if label != -100) for e in examples)


def check_held_out(tokens: int, cfg: CausalLMRecipe, where: str) -> None:
    """Too little held-out text would give a perplexity that looks like a result but is not one."""
    if tokens >= cfg.eval.min_tokens:
        return
    raise DataError(f"{where}: the held-out split has {tokens} token(s), fewer than eval.min_tokens = "
                    f"{cfg.eval.min_tokens}: a perplexity or KL on it would not mean anything; give data.eval_paths, "
                    f"raise data.eval_fraction or add text (or lower eval.min_tokens knowingly)")


def dataset_fingerprint(cfg: CausalLMRecipe, tokenizer: Any) -> str:
    """What decides the examples: sources, format, packing / truncation, split, caps, tokenizer."""
    d = cfg.data
    # hf leaves the settings, so a recipe without it keeps the fingerprint it had before data.hf existed
    settings = json.dumps({k: v for k, v in to_dict(d).items() if k not in ("paths", "eval_paths", "hf")}, sort_keys=True)
    parts = [text_fingerprint(d.paths, settings), text_fingerprint(d.eval_paths, settings) if d.eval_paths else "",
             tokenizer_hash(tokenizer)]
    if d.hf is not None:  # path, name, splits, columns, caps and the source's content (streaming reads the same)
        parts.append(hf_source.fingerprint(d.hf))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
