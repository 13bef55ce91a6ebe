"""Prompt data for on-policy distillation: a prompt, an optional reference completion, an optional answer.

Records (JSONL): {"prompt": str, "completion"?: str, "answer"?: str} or {"messages": [...]} whose
last assistant message is the reference completion (the prompt is the chat template of the
messages before it, with the generation prompt). From plain text, `text_prompts` cuts documents
into (prompt, continuation) pairs of fixed token lengths.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from distill.data.text import read_documents, tsv_column
from distill.errors import DataError


def prompt_record(tokenizer: Any, record: dict, max_prompt: int, where: str) -> dict[str, Any]:
    if "messages" in record:
        messages = record["messages"]
        reference = messages[-1]["content"] if messages and messages[-1].get("role") == "assistant" else ""
        context = messages[:-1] if reference else messages
        prompt = tokenizer.apply_chat_template(context, tokenize=True, add_generation_prompt=True)
        prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    elif "prompt" in record:
        prompt, reference = tokenizer(record["prompt"], add_special_tokens=False)["input_ids"], record.get("completion", "")
    else:
        raise DataError(f"{where}: expected 'prompt' or 'messages'")
    completion = tokenizer(reference, add_special_tokens=False)["input_ids"] if reference else []
    if completion and tokenizer.eos_token_id is not None:
        completion.append(tokenizer.eos_token_id)
    return {"prompt": prompt[-max_prompt:], "completion": completion, "answer": record.get("answer")}


def jsonl_prompts(tokenizer: Any, path: str, max_prompt: int) -> list[dict[str, Any]]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"data.paths: {path!r} does not exist")
    out = []
    for n, line in enumerate(file.read_text().splitlines(), start=1):
        if line.strip():
            try:
                out.append(prompt_record(tokenizer, json.loads(line), max_prompt, f"{path}:{n}"))
            except ValueError:
                raise DataError(f"{path}:{n}: not valid JSON") from None
    return out


def text_prompts(tokenizer: Any, paths: list[str], *, prompt_tokens: int, completion_tokens: int,
                 column: int | None = None) -> list[dict[str, Any]]:
    """(prompt, continuation) token pairs cut from consecutive stretches of each document."""
    texts = (tsv_column(text, column) if column is not None else text for _, text in read_documents(paths))
    return prompts_from_texts(tokenizer, texts, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def prompts_from_texts(tokenizer: Any, texts: Iterable[str], *, prompt_tokens: int,
                       completion_tokens: int) -> list[dict[str, Any]]:
    """`text_prompts` of the given texts (one document each)."""
    out = []
    span = prompt_tokens + completion_tokens
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids) - span + 1, span):
            out.append({"prompt": ids[start:start + prompt_tokens],
                        "completion": ids[start + prompt_tokens:start + span], "answer": None})
    return out
