"""Causal-LM examples from a Hugging Face dataset (`data.hf`): the roles each data.format reads, turned into
examples by the converters the file formats use.

  text          text                                    documents, packed into blocks
  jsonl         messages, or prompt + completion, or text  examples (loss on assistant turns / completion)
  prompts       messages, or prompt (+ completion, answer)  prompt records for on-policy training
  text_prompts  text                                    (prompt, continuation) pairs cut from each text

Without data.hf.eval_split the held-out share (data.eval_fraction) is chosen as for files: by a hash of each
row's name `<split>/<row>` (text), or the last rows (the others).
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from distill.data.hf_source import fingerprint, read_rows
from distill.data.prompts import prompt_record, prompts_from_texts
from distill.data.text import pack_documents_cached, record_example
from distill.tasks.causal_lm.schema import HF_ROLES, LMDataSpec



def rows(d: LMDataSpec, split: str) -> list[dict[str, Any]]:
    """The split's rows by the roles of data.format (at most data.hf.max_examples)."""
    choices, optional = HF_ROLES[d.format]
    return read_rows(d.hf, split, choices, optional).rows


def packed_blocks(d: LMDataSpec, tokenizer: Any, split: str, eval_fraction: float, settings: str) -> dict[str, np.ndarray]:
    """{"train", "eval"} blocks of the split's texts, cached like packed text files (by source and tokenizer)."""
    def documents() -> list[tuple[str, str]]:
        return [(f"{split}/{i}", str(r["text"])) for i, r in enumerate(rows(d, split))]
    # the source's content (fingerprint) enters the key, so an edited dataset is re-packed
    key = hashlib.sha256(f"{fingerprint(d.hf)}|{split}|{eval_fraction}|{settings}".encode()).hexdigest()[:16]
    return pack_documents_cached(tokenizer, documents, block_size=d.block_size, eval_fraction=eval_fraction,
                                 column=None, fingerprint=f"hf-{key}", where=f"data.hf split {split!r}")


def examples(d: LMDataSpec, tokenizer: Any, split: str) -> list[dict[str, list[int]]]:
    """jsonl: one example per row."""
    return [record_example(tokenizer, r, d.max_length, f"data.hf split {split!r} row {i}")
            for i, r in enumerate(rows(d, split))]


def prompt_records(d: LMDataSpec, tokenizer: Any, split: str) -> list[dict[str, Any]]:
    """prompts / text_prompts: {"prompt", "completion", "answer"} records."""
    if d.format == "text_prompts":
        return prompts_from_texts(tokenizer, (str(r["text"]) for r in rows(d, split)), prompt_tokens=d.prompt_tokens,
                                  completion_tokens=d.completion_tokens)
    return [prompt_record(tokenizer, r, d.max_prompt_length, f"data.hf split {split!r} row {i}")
            for i, r in enumerate(rows(d, split))]
