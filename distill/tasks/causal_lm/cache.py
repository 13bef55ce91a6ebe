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
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from distill.config import to_dict
from distill.data.store import StoreWriter
from distill.data.token_stream import TokenBatches, next_token_targets
from distill.errors import ConfigError
from distill.losses.fused import chunk_bounds, default_chunk_size
from distill.losses.sparse import topk_with_tail
from distill.models.hf import LMBody, load_causal_lm, load_tokenizer, tokenizer_hash, vocab_limit
from distill.progress import progress_bar
from distill.tasks.causal_lm.data import check_held_out, dataset_fingerprint, held_out_tokens, load_lm_data
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
    return arrays, nll


def merge(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k not in ("example_lengths", "positions")}
    out["example_offsets"] = np.concatenate([[0], np.cumsum(np.concatenate([p["example_lengths"] for p in parts]))])
    out["position_offsets"] = np.concatenate([[0], np.cumsum(np.concatenate([p["positions"] for p in parts]))])
    return out


def cache_split(writer: StoreWriter, split: str, examples: Any, body: LMBody, pad_id: int, cfg: CausalLMRecipe,
                vocab: int, progress: bool) -> None:
    store = cfg.store
    stream = TokenBatches(examples, batch_size=store.batch_size, pad_id=pad_id, shuffle=False)
    start, total = writer.done_examples(split), len(examples)
    bar = progress_bar(total=total, initial=start, desc=f"caching {split}", unit="ex", disable=not progress)
    with bar:
        for shard_start in range(start, total, store.examples_per_shard):
            index = torch.arange(shard_start, min(shard_start + store.examples_per_shard, total))
            parts, nll = [], 0.0
            for i in range(0, len(index), store.batch_size):
                arrays, part_nll = shard_arrays(body, stream.make_batch(index[i:i + store.batch_size]), store.k,
                                                store.temperature, vocab, NP_DTYPES[store.dtype])
                parts.append(arrays)
                nll += part_nll
                bar.update(len(index[i:i + store.batch_size]))
            merged = merge(parts)
            writer.write_shard(split, merged, examples=len(index), tokens=int(merged["position_offsets"][-1]),
                               teacher_nll_sum=nll)


def cache(cfg: CausalLMRecipe, *, overwrite: bool = False) -> dict[str, Any]:
    """Write (or finish) the store described by cfg.store; returns its manifest."""
    if cfg.store is None or cfg.teacher is None:
        raise ConfigError("distill cache needs a teacher section and a store section (path, k, temperature)")
    teacher = load_causal_lm(cfg.teacher.path, cfg.teacher.dtype).eval()
    tokenizer = load_tokenizer(cfg.teacher.path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    vocab, _ = vocab_limit(tokenizer, teacher)
    if cfg.store.k > vocab:
        raise ConfigError(f"store.k = {cfg.store.k}: larger than the vocabulary ({vocab})")
    identity = {"kind": "causal_lm", "teacher": teacher_identity(cfg, teacher), "tokenizer_hash": tokenizer_hash(tokenizer),
                "k": cfg.store.k, "temperature": cfg.store.temperature, "dtype": cfg.store.dtype,
                "dataset_fingerprint": dataset_fingerprint(cfg, tokenizer)}
    extra = {"teacher_config": teacher.config.to_dict(), "vocab_size": vocab, "data": to_dict(cfg.data),
             "teacher_params": sum(p.numel() for p in teacher.parameters())}
    train, held = load_lm_data(cfg, tokenizer)
    check_held_out(held_out_tokens(held), cfg, "data")  # before any file is written
    writer = StoreWriter(cfg.store.path, identity, extra, overwrite=overwrite)
    tokenizer.save_pretrained(Path(cfg.store.path))
    body = LMBody(teacher)
    for split, examples in (("train", train), ("eval", held)):
        cache_split(writer, split, examples, body, tokenizer.pad_token_id, cfg, vocab, cfg.progress)
    eval_shards = writer.manifest["splits"].get("eval", [])
    tokens = sum(s["tokens"] for s in eval_shards)
    nll = sum(s.get("teacher_nll_sum", 0.0) for s in eval_shards) / max(tokens, 1)
    size = sum((Path(cfg.store.path) / s["file"]).stat().st_size for split in writer.manifest["splits"].values() for s in split)
    positions = sum(s["tokens"] for split in writer.manifest["splits"].values() for s in split)
    writer.set(complete=True, teacher_eval_nll=nll, teacher_eval_perplexity=math.exp(min(nll, 50)),
               bytes_per_token=size / max(positions, 1))
    return writer.manifest
