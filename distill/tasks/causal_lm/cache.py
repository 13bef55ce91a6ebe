"""`distill cache` for causal LMs: run the teacher once over the recipe's data, keep top-k + tail.

The store records, per valid next-token position, the teacher's top-k log-probabilities at the
capture temperature (store.temperature), their token ids, and the log of the remaining mass;
and per held-out position the teacher's own next-token NLL at T = 1, so a student trained from
the store can be compared with the teacher's perplexity without loading it.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from distill.config import to_dict
from distill.data.store import StoreWriter
from distill.data.token_stream import TokenBatches, next_token_targets
from distill.errors import ConfigError
from distill.losses.fused import chunk_bounds, default_chunk_size
from distill.losses.sparse import topk_with_tail
from distill.data.align import Aligner
from distill.methods.base import METHODS
from distill.models.hf import LMBody, load_causal_lm, load_tokenizer, tokenizer_hash, vocab_limit
from distill.models.teacher import FrozenTeacher
from distill.models.teacher_sources import AlignedTokenTeacher
from distill.progress import progress_bar
from distill.tasks.causal_lm.data import (TEACHER_TOKENIZER, check_held_out, dataset_fingerprint, held_out_tokens,
                                          load_lm_data, student_tokenizer_source, with_pad_token)
from distill.tasks.causal_lm.schema import CausalLMRecipe

NP_DTYPES = {"float16": np.float16, "float32": np.float32}


def teacher_identity(cfg: CausalLMRecipe, teacher: torch.nn.Module) -> dict[str, str]:
    config = json.dumps(teacher.config.to_dict(), sort_keys=True, default=str)
    return {"source": cfg.teacher.path, "config_hash": hashlib.sha256(config.encode()).hexdigest()[:16]}


@torch.no_grad()
def shard_arrays(body: LMBody, batch: dict[str, torch.Tensor], k: int, temperature: float, vocab: int,
                 dtype: np.dtype) -> tuple[dict[str, np.ndarray], float]:
    """Store arrays for one batch of examples, and the teacher's summed next-token NLL (T = 1)."""
    labels, mask = next_token_targets(batch)
    hidden = body(batch["input_ids"], batch["attention_mask"])[:, :-1][mask]
    targets = labels[mask]
    ids, logp, tail, nll = [], [], [], 0.0
    for start, end in chunk_bounds(len(hidden), default_chunk_size(vocab)):
        logits = (hidden[start:end] @ body.head_weight[:vocab].t()).float()
        i, lp, tl = topk_with_tail(logits, k, temperature)
        ids.append(i), logp.append(lp), tail.append(tl)
        nll -= float(F.log_softmax(logits, dim=-1).gather(1, targets[start:end, None]).sum())
    lengths = batch["attention_mask"].sum(1)
    valid_per_example = mask.sum(1)
    input_ids = torch.cat([batch["input_ids"][j, :n] for j, n in enumerate(lengths.tolist())])
    example_labels = torch.cat([batch["labels"][j, :n] for j, n in enumerate(lengths.tolist())])
    learned = example_labels != -100
    if not torch.equal(example_labels[learned], input_ids[learned]):  # the 1-byte mask below relies on it
        raise ValueError("labels differ from input_ids on learned tokens: the store keeps labels as a loss mask")
    arrays = {
        "input_ids": input_ids.int().numpy(),
        "loss_mask": learned.numpy().astype(np.uint8),  # labels = input_ids where 1, else -100 (3 B/token less)
        "example_lengths": lengths.numpy().astype(np.int64),
        "positions": valid_per_example.numpy().astype(np.int64),
        "topk_ids": torch.cat(ids).int().numpy(),
        "topk_logp": torch.cat(logp).numpy().astype(dtype),
        "tail_logp": torch.cat(tail).clamp_min(-1e4).numpy().astype(dtype),  # -inf (k = V) kept finite for fp16
    }
    return arrays, {"teacher_nll_sum": nll}


@torch.no_grad()
def aligned_shard_arrays(source: AlignedTokenTeacher, batch: dict[str, torch.Tensor], k: int, temperature: float,
                         dtype: np.dtype) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Store arrays for a teacher of another tokenizer: the student tokens, the alignment, and per teacher
    position its top-k + tail (at the capture temperature) and the log-prob of its actual next token (T = 1)."""
    alignments, _ = source.alignments(batch)
    teacher_ids, teacher_mask = source.teacher_batch(alignments)
    hidden = source.body(teacher_ids, teacher_mask)
    rows = {"topk_ids": [], "topk_logp": [], "tail_logp": [], "token_logp": []}
    nll, n_bytes = 0.0, 0
    for b, al in enumerate(alignments):
        n = len(al.teacher_ids)
        token = torch.empty(n - 1)
        for start, end in chunk_bounds(n - 1, default_chunk_size(source.teacher_vocab)):
            logits = (hidden[b, start:end] @ source.body.model.head_weight[:source.teacher_vocab].t()).float()
            i, lp, tl = topk_with_tail(logits, k, temperature)
            rows["topk_ids"].append(i), rows["topk_logp"].append(lp), rows["tail_logp"].append(tl)
            token[start:end] = F.log_softmax(logits, -1).gather(1, teacher_ids[b, start + 1:end + 1, None]).squeeze(1)
        rows["token_logp"].append(token)
        for (a, _, c, d), nb in zip(al.spans, al.span_bytes):  # the teacher's NLL on the spans a student is scored on
            if a >= 1 and c >= 1:
                nll -= float(token[c - 1:d].sum())
                n_bytes += nb
    lengths = batch["attention_mask"].sum(1).tolist()
    arrays = {
        "input_ids": torch.cat([batch["input_ids"][j, :n] for j, n in enumerate(lengths)]).int().numpy(),
        "loss_mask": torch.cat([batch["labels"][j, :n] != -100 for j, n in enumerate(lengths)]).numpy().astype(np.uint8),
        "example_lengths": np.array(lengths, dtype=np.int64),
        "teacher_ids": np.concatenate([np.array(a.teacher_ids, dtype=np.int32) for a in alignments]),
        "teacher_lengths": np.array([len(a.teacher_ids) for a in alignments], dtype=np.int64),
        "spans": np.concatenate([np.array([(*sp, nb, nc) for sp, nb, nc in zip(a.spans, a.span_bytes, a.span_chars)],
                                          dtype=np.int32).reshape(-1, 6) for a in alignments]),
        "span_counts": np.array([len(a.spans) for a in alignments], dtype=np.int64),
        "positions": np.array([len(a.teacher_ids) - 1 for a in alignments], dtype=np.int64),
        "topk_ids": torch.cat(rows["topk_ids"]).int().numpy(),
        "topk_logp": torch.cat(rows["topk_logp"]).numpy().astype(dtype),
        "tail_logp": torch.cat(rows["tail_logp"]).clamp_min(-1e4).numpy().astype(dtype),
        "token_logp": torch.cat(rows["token_logp"]).numpy().astype(np.float32),
    }
    return arrays, {"teacher_nll_sum": nll, "teacher_bytes": n_bytes}


COUNTS = {"example_lengths": "example_offsets", "positions": "position_offsets", "teacher_lengths": "teacher_offsets",
          "span_counts": "span_offsets"}


def merge(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One shard from per-batch arrays: per-example counts become offsets (n + 1)."""
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k not in COUNTS}
    for count, offsets in COUNTS.items():
        if count in parts[0]:
            out[offsets] = np.concatenate([[0], np.cumsum(np.concatenate([p[count] for p in parts]))])
    return out


def cache_split(writer: StoreWriter, split: str, examples: Any, make_arrays: Callable, pad_id: int,
                cfg: CausalLMRecipe) -> None:
    """Shards of `examples`, resuming after the last complete one; `make_arrays(batch) -> (arrays, sums)`."""
    store = cfg.store
    stream = TokenBatches(examples, batch_size=store.batch_size, pad_id=pad_id, shuffle=False)
    start, total = writer.done_examples(split), len(examples)
    bar = progress_bar(total=total, initial=start, desc=f"caching {split}", unit="ex", disable=not cfg.progress)
    with bar:
        for shard_start in range(start, total, store.examples_per_shard):
            index = torch.arange(shard_start, min(shard_start + store.examples_per_shard, total))
            parts, sums = [], {}
            for i in range(0, len(index), store.batch_size):
                arrays, part = make_arrays(stream.make_batch(index[i:i + store.batch_size]))
                parts.append(arrays)
                sums = {k: sums.get(k, 0.0) + v for k, v in part.items()}
                bar.update(len(index[i:i + store.batch_size]))
            merged = merge(parts)
            writer.write_shard(split, merged, examples=len(index), tokens=int(merged["position_offsets"][-1]), **sums)


def cache(cfg: CausalLMRecipe, *, overwrite: bool = False) -> dict[str, Any]:
    """Write (or finish) the store described by cfg.store; returns its manifest."""
    if cfg.store is None or cfg.teacher is None:
        raise ConfigError("distill cache needs a teacher section and a store section (path, k, temperature)")
    teacher = load_causal_lm(cfg.teacher.path, cfg.teacher.dtype).eval()
    teacher_tokenizer = with_pad_token(load_tokenizer(cfg.teacher.path))
    cross = METHODS.get(cfg.method.name, field="method.name").obj.cross_tokenizer
    tokenizer = with_pad_token(load_tokenizer(student_tokenizer_source(cfg))) if cross else teacher_tokenizer
    vocab, _ = vocab_limit(teacher_tokenizer, teacher)
    if cfg.store.k > vocab:
        raise ConfigError(f"store.k = {cfg.store.k}: larger than the vocabulary ({vocab})")
    identity = {"kind": "causal_lm", "teacher": teacher_identity(cfg, teacher), "tokenizer_hash": tokenizer_hash(tokenizer),
                "k": cfg.store.k, "temperature": cfg.store.temperature, "dtype": cfg.store.dtype,
                "dataset_fingerprint": dataset_fingerprint(cfg, tokenizer)}
    if cross:
        identity["teacher_tokenizer_hash"] = tokenizer_hash(teacher_tokenizer)
    extra = {"teacher_config": teacher.config.to_dict(), "vocab_size": vocab, "data": to_dict(cfg.data),
             "teacher_params": sum(p.numel() for p in teacher.parameters()), "aligned": cross}
    train, held = load_lm_data(cfg, tokenizer)
    check_held_out(held_out_tokens(held), cfg, "data")  # before any file is written
    writer = StoreWriter(cfg.store.path, identity, extra, overwrite=overwrite)
    tokenizer.save_pretrained(Path(cfg.store.path))
    body = LMBody(teacher)
    if cross:
        teacher_tokenizer.save_pretrained(Path(cfg.store.path) / TEACHER_TOKENIZER)
        source = AlignedTokenTeacher(FrozenTeacher(body), Aligner(tokenizer, teacher_tokenizer), vocab,
                                     teacher_tokenizer.pad_token_id)
        make = lambda batch: aligned_shard_arrays(source, batch, cfg.store.k, cfg.store.temperature,  # noqa: E731
                                                  NP_DTYPES[cfg.store.dtype])
    else:
        make = lambda batch: shard_arrays(body, batch, cfg.store.k, cfg.store.temperature, vocab,  # noqa: E731
                                          NP_DTYPES[cfg.store.dtype])
    for split, examples in (("train", train), ("eval", held)):
        cache_split(writer, split, examples, make, tokenizer.pad_token_id, cfg)
    return finish(writer, cfg)


def finish(writer: StoreWriter, cfg: CausalLMRecipe) -> dict[str, Any]:
    """Mark the store complete with its held-out teacher figures and size per stored position."""
    eval_shards = writer.manifest["splits"].get("eval", [])
    tokens = sum(s["tokens"] for s in eval_shards)
    nll = sum(s.get("teacher_nll_sum", 0.0) for s in eval_shards)
    size = sum((Path(cfg.store.path) / s["file"]).stat().st_size for split in writer.manifest["splits"].values() for s in split)
    positions = sum(s["tokens"] for split in writer.manifest["splits"].values() for s in split)
    figures = {"teacher_eval_nll": nll / max(tokens, 1), "teacher_eval_perplexity": math.exp(min(nll / max(tokens, 1), 50))}
    n_bytes = sum(s.get("teacher_bytes", 0) for s in eval_shards)
    if n_bytes:  # aligned: the teacher's own figures are in bits per byte of the aligned text
        figures = {"teacher_eval_bits_per_byte": nll / (math.log(2) * n_bytes)}
    writer.set(complete=True, bytes_per_token=size / max(positions, 1), **figures)
    return writer.manifest
