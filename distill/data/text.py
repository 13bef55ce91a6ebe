"""Text data for causal-LM distillation: sources, packing, prompt/completion and chat examples.

Examples are dicts of int64 lists: `input_ids` and `labels` (-100 where no loss is taken, e.g.
prompt tokens). Next-token alignment (position i predicts token i+1) happens in the loss, as in
Hugging Face models, so labels equal input_ids wherever a token is learned.

Sources:
  - plain text: files, folders (recursively, sorted) or tar archives of files; one document each;
    `.tsv` lines can be reduced to one column (WordNet glosses);
  - JSONL: {"prompt": ..., "completion": ...} or {"messages": [{"role", "content"}, ...]} (chat
    template of the tokenizer; loss on assistant turns only), or {"text": ...}.
The train / eval split is by document, by a hash of its name, so it is stable across runs.
"""
from __future__ import annotations

import hashlib
import io
import json
import lzma
import tarfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from distill.data.cache import cached_arrays, source_fingerprint
from distill.errors import DataError
from distill.progress import progress_bar

TEXT_SUFFIXES = (".txt", ".rst", ".md", ".py", ".tsv", ".text", ".jsonl")
IGNORE = -100


# ----------------------------------------------------------------------------- reading sources

def _open_text(path: Path) -> str:
    raw = path.read_bytes()
    if path.suffix == ".xz":
        raw = lzma.decompress(raw)
    return raw.decode("utf-8", errors="replace")


def _is_text(name: str) -> bool:
    stem = name[:-3] if name.endswith(".xz") else name
    return stem.endswith(TEXT_SUFFIXES) or "." not in Path(stem).name


def read_documents(paths: list[str]) -> Iterator[tuple[str, str]]:
    """(name, text) for every document under `paths` (files, folders, tar archives), in sorted order."""
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise DataError(f"data.paths: {raw!r} does not exist")
        if path.is_dir():
            for f in sorted(p for p in path.rglob("*") if p.is_file() and _is_text(p.name)):
                yield str(f.relative_to(path)), _open_text(f)
        elif tarfile.is_tarfile(path):
            with tarfile.open(path) as archive:
                members = sorted((m for m in archive if m.isfile() and _is_text(m.name)), key=lambda m: m.name)
                for m in members:
                    yield m.name, archive.extractfile(m).read().decode("utf-8", errors="replace")
        else:
            yield path.name, _open_text(path)


def tsv_column(text: str, column: int) -> str:
    """Keep one tab-separated column of each line (e.g. WordNet glosses: column 2)."""
    out = []
    for line in text.splitlines():
        cells = line.split("\t")
        if len(cells) > column:
            out.append(cells[column])
    return "\n".join(out)


def is_eval_document(name: str, fraction: float) -> bool:
    digest = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    return digest / 0xFFFFFFFF < fraction


# ----------------------------------------------------------------------------- packing

def pack_documents(token_lists: list[list[int]], block_size: int, eos_id: int | None) -> np.ndarray:
    """Concatenate documents (EOS between them) and cut into (n_blocks, block_size) int32 rows.

    The tail shorter than one block is dropped (at most block_size - 1 tokens of the whole corpus).
    """
    stream: list[int] = []
    for ids in token_lists:
        stream.extend(ids)
        if eos_id is not None:
            stream.append(eos_id)
    n = len(stream) // block_size
    return np.asarray(stream[:n * block_size], dtype=np.int32).reshape(n, block_size)


def tokenize_texts(tokenizer: Any, texts: list[str], desc: str) -> list[list[int]]:
    out = []
    for text in progress_bar(texts, desc=desc, unit="doc"):
        out.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return out


def packed_text_blocks(tokenizer: Any, paths: list[str], *, block_size: int, eval_fraction: float,
                       column: int | None, fingerprint: str) -> dict[str, np.ndarray]:
    """{"train": (N, L), "eval": (M, L)} packed blocks, cached on disk by source and tokenizer."""
    return pack_documents_cached(tokenizer, lambda: list(read_documents(paths)), block_size=block_size,
                                 eval_fraction=eval_fraction, column=column, fingerprint=fingerprint,
                                 where=f"data.paths {paths}")


def pack_documents_cached(tokenizer: Any, read: Callable[[], list[tuple[str, str]]], *, block_size: int,
                          eval_fraction: float, column: int | None, fingerprint: str, where: str) -> dict[str, np.ndarray]:
    """`packed_text_blocks` of the (name, text) documents `read()` returns (called only when not cached);
    the held-out documents are chosen by a hash of their name."""
    def build() -> dict[str, np.ndarray]:
        docs = read()
        if not docs:
            raise DataError(f"{where}: no text documents found")
        texts = [tsv_column(t, column) if column is not None else t for _, t in docs]
        split = [is_eval_document(name, eval_fraction) for name, _ in docs]
        if eval_fraction and not any(split):  # too few documents for the hash split: hold out the last one
            split[-1] = True
        ids = tokenize_texts(tokenizer, texts, "tokenizing")
        eos = tokenizer.eos_token_id
        return {"train": pack_documents([i for i, e in zip(ids, split) if not e], block_size, eos),
                "eval": pack_documents([i for i, e in zip(ids, split) if e], block_size, eos)}
    return cached_arrays(f"text-{fingerprint}", build)


# ----------------------------------------------------------------------------- prompt / completion and chat

def prompt_completion_example(tokenizer: Any, prompt: str, completion: str, max_length: int) -> dict[str, list[int]]:
    """Prompt tokens (labels -100), then completion tokens and EOS (labels = tokens); truncated to max_length."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        c = c + [tokenizer.eos_token_id]
    ids = (p + c)[:max_length]
    labels = ([IGNORE] * len(p) + c)[:max_length]
    return {"input_ids": ids, "labels": labels}


def chat_example(tokenizer: Any, messages: list[dict[str, str]], max_length: int) -> dict[str, list[int]]:
    """Messages through the tokenizer's chat template; labels only on assistant turns.

    Each assistant span is found by rendering the conversation up to the end of that message and
    up to its start, so whatever the template adds around turns is attributed correctly.
    """
    if getattr(tokenizer, "chat_template", None) is None:
        raise DataError("chat data needs a tokenizer with a chat template")
    ids = _render(tokenizer, messages, add_generation_prompt=False)
    labels = [IGNORE] * len(ids)
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        start = len(_render(tokenizer, messages[:i], add_generation_prompt=True))
        end = len(_render(tokenizer, messages[:i + 1], add_generation_prompt=False))
        labels[start:end] = ids[start:end]
    return {"input_ids": ids[:max_length], "labels": labels[:max_length]}


def _render(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> list[int]:
    if not messages:
        return []
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)


def jsonl_examples(tokenizer: Any, path: str, max_length: int) -> list[dict[str, list[int]]]:
    """Examples from a JSONL file of prompt/completion, chat messages or plain text records."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"data.paths: {path!r} does not exist")
    out = []
    for n, line in enumerate(io.StringIO(_open_text(file)), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise DataError(f"{path}:{n}: not valid JSON") from None
        out.append(record_example(tokenizer, record, max_length, f"{path}:{n}"))
    return out


def record_example(tokenizer: Any, record: dict, max_length: int, where: str) -> dict[str, list[int]]:
    """One example of a chat ("messages"), prompt + completion, or "text" record (a JSONL line or a dataset row)."""
    if "messages" in record:
        return chat_example(tokenizer, record["messages"], max_length)
    if "prompt" in record and "completion" in record:
        return prompt_completion_example(tokenizer, record["prompt"], record["completion"], max_length)
    if "text" in record:
        ids = tokenizer(record["text"], add_special_tokens=False)["input_ids"][:max_length]
        return {"input_ids": ids, "labels": list(ids)}
    raise DataError(f"{where}: expected 'messages', 'prompt' + 'completion', or 'text'")


def text_fingerprint(paths: list[str], settings: str) -> str:
    """Changes whenever a source file or a tokenization setting changes."""
    parts = [source_fingerprint(Path(p).expanduser()) if Path(p).expanduser().exists() else p for p in paths]
    return hashlib.sha256(("|".join(parts) + "|" + settings).encode()).hexdigest()[:16]
