"""Batches for `DistillationTrainer`: collating pre-tokenized (and store) examples, prompts of rollouts, the default collator."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from distill.data.store import StoreReader
from distill.data.token_stream import SPARSE_KEYS, collate
from distill.errors import DistillError
from distill.hf.config import DistillationConfig, DistillationConfigError

IGNORE = -100


@dataclass
class TokenCollator:
    """Pre-tokenized examples {"input_ids", optional "labels" (-100 = no loss)} -> right-padded
    {"input_ids", "labels", "attention_mask"} (B, L); a store's teacher rows are concatenated."""

    pad_id: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Tensor]:
        rows = []
        for e in examples:
            row = {"input_ids": list(e["input_ids"]), "labels": list(e.get("labels", e["input_ids"]))}
            rows.append({**row, **{k: e[k] for k in SPARSE_KEYS if k in e}})
        return collate(rows, self.pad_id)


def prompt_rows(inputs: dict[str, Tensor]) -> list[list[int]]:
    """Each row's prompt token ids: TRL's collator keys ("prompts" + "prompt_attention_mask") when
    present, else the attended tokens before the row's first labelled position."""
    if "prompts" in inputs:
        ids, mask = inputs["prompts"], inputs.get("prompt_attention_mask", torch.ones_like(inputs["prompts"]))
        return [row[m.bool()].tolist() for row, m in zip(ids, mask)]
    ids, labels = inputs["input_ids"], inputs["labels"]
    attention = inputs.get("attention_mask", torch.ones_like(ids)).bool()
    out = []
    for row, lab, att in zip(ids, labels, attention):
        labelled = (lab != IGNORE).nonzero()
        end = int(labelled[0]) if len(labelled) else len(row)
        out.append(row[:end][att[:end]].tolist())
    return out


def cut_at_eos(completion: list[int], eos_ids: set[int]) -> list[int]:
    """The completion up to and including its first end-of-sequence token (generate pads after it)."""
    for i, token in enumerate(completion):
        if token in eos_ids:
            return completion[:i + 1]
    return completion


def open_store(args: DistillationConfig) -> Any:
    """The store's reader, refused (one line) unless it is a same-tokenizer causal_lm store at the loss temperature."""
    reader = StoreReader(args.store)
    if reader.manifest.get("kind") != "causal_lm" or reader.manifest.get("aligned"):
        raise DistillationConfigError(f"DistillationConfig.store = {args.store!r}: not a same-tokenizer causal_lm store")
    captured = float(reader.manifest["temperature"])
    if abs(captured - args.loss_temperature) > 1e-9:
        raise DistillationConfigError(f"DistillationConfig.loss_temperature = {args.loss_temperature}: the store was "
                                      f"captured at temperature {captured}; set loss_temperature = {captured}")
    return reader


def default_collator(dataset: Any, tokenizer: Any, model: nn.Module, args: DistillationConfig) -> Any:
    """TokenCollator for pre-tokenized examples, TRL's chat collator (GKDTrainer's default) otherwise."""
    try:
        first = dataset[0] if dataset is not None and len(dataset) else {}
    except (TypeError, NotImplementedError):  # a streaming dataset: no peeking; tokenized is the common case
        first = {"input_ids": None}
    if "input_ids" in first or dataset is None:
        pad = getattr(tokenizer, "pad_token_id", None)
        pad = pad if pad is not None else (model.config.pad_token_id if model.config.pad_token_id is not None
                                           else model.config.eos_token_id)
        return TokenCollator(int(pad if pad is not None else 0))
    try:
        from trl.experimental.utils import DataCollatorForChatML
    except ImportError:
        raise DistillError("DistillationTrainer: the dataset is not tokenized (no input_ids); pass a data_collator, "
                           "or install trl for GKDTrainer's chat collator: pip install 'distill[trl]'") from None
    if tokenizer is None:
        raise DistillationConfigError("DistillationTrainer: chat data need processing_class (the tokenizer)")
    return DataCollatorForChatML(tokenizer=tokenizer, max_length=args.max_length)
