"""`distill cache` for embedding recipes: the teacher's embeddings of every distinct text, once.

Splits "train" and "eval" hold the recipe's training and held-out texts (by index, in the data
order), "suite" the texts the end-of-run evaluation reads at the recipe's eval limits (sorted), so
`distill train` from the store loads no teacher and still has the teacher's rows of the evaluation.
The manifest also keeps the teacher's own figures (size, sentences/s), measured here. Writing resumes
after the last complete shard (distill.data.store).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from distill.data.embedding_sets import throughput_sentences
from distill.data.store import StoreWriter
from distill.errors import ConfigError
from distill.eval.embeddings import THROUGHPUT_SENTENCES, encode_throughput, model_size
from distill.models.encoders import TextEncoder
from distill.models.hf import resolve_dtype, tokenizer_hash
from distill.tasks.embedding.data import dataset_fingerprint, texts_fingerprint
from distill.tasks.embedding.runner import recipe_data, suite_texts
from distill.tasks.embedding.schema import EmbeddingRecipe
from distill.tasks.embedding.signal import embed_shards, load_teacher, teacher_identity
from distill.train.core import set_determinism


def cache(cfg: EmbeddingRecipe, *, overwrite: bool = False) -> dict[str, Any]:
    """Write (or finish) the store described by cfg.store; returns its manifest."""
    if cfg.store is None or cfg.teacher is None:
        raise ConfigError("distill cache needs a teacher section and a store section (path)")
    set_determinism(cfg.seed, cfg.threads)  # the threads the run uses: the teacher's speed is measured here
    evaluated = suite_texts(cfg)
    data = recipe_data(cfg, evaluated)  # before the teacher loads: a data error costs nothing
    teacher = load_teacher(cfg)
    identity = {"kind": "embedding", "teacher": teacher_identity(cfg.teacher.path),
                "tokenizer_hash": tokenizer_hash(teacher.tokenizer), "k": None, "temperature": None,
                "dtype": cfg.store.dtype, "dataset_fingerprint": dataset_fingerprint(data)}
    extra = {"dim": teacher.dim, "teacher_path": cfg.teacher.path,
             "teacher_dtype": resolve_dtype(cfg.teacher.dtype), "data": {"format": cfg.data.format,
             "paths": cfg.data.paths, "corpora": cfg.data.corpora}, "suite_fingerprint": texts_fingerprint(evaluated)}
    writer = StoreWriter(cfg.store.path, identity, extra, overwrite=overwrite)
    for split, texts in (("train", data.train.texts), ("eval", data.held.texts), ("suite", evaluated)):
        cache_split(writer, split, texts, teacher, cfg)
    return finish(writer, cfg, teacher)


def cache_split(writer: StoreWriter, split: str, texts: list[str], teacher: TextEncoder, cfg: EmbeddingRecipe) -> None:
    """Shards of (embeddings, index), resuming after the last complete one."""
    dtype = np.dtype(cfg.store.dtype)
    for first, embeddings in embed_shards(teacher, texts, texts_per_shard=cfg.store.texts_per_shard,
                                          batch_size=cfg.teacher.batch_size, start=writer.done_examples(split),
                                          progress=cfg.progress, desc=f"caching {split}"):
        index = np.arange(first, first + len(embeddings), dtype=np.int64)
        writer.write_shard(split, {"embeddings": embeddings.numpy().astype(dtype), "index": index},
                           examples=len(index), tokens=len(index))


def finish(writer: StoreWriter, cfg: EmbeddingRecipe, teacher: TextEncoder) -> dict[str, Any]:
    """Mark the store complete with the teacher's figures (what the evaluation would measure of it)."""
    figures: dict[str, Any] = {"dim": teacher.dim, **model_size(teacher)}
    if cfg.eval.suites:
        figures["sentences_per_s"] = encode_throughput(teacher.encode, throughput_sentences(cfg.eval.data_dir,
                                                                                         THROUGHPUT_SENTENCES))
    shards = [s for split in writer.manifest["splits"].values() for s in split]
    size = sum((Path(cfg.store.path) / s["file"]).stat().st_size for s in shards)
    counts = {split: sum(s["examples"] for s in v) for split, v in writer.manifest["splits"].items()}
    writer.set(complete=True, teacher_figures=figures, texts=counts,
               bytes_per_text=size / max(sum(counts.values()), 1))
    return writer.manifest


def describe(manifest: dict[str, Any], path: str) -> str:
    """The line `distill cache` prints about the written store."""
    counts = ", ".join(f"{n:,} {split}" for split, n in manifest.get("texts", {}).items())
    return (f"store {path}: teacher embeddings of {counts} texts, {manifest['dim']}-d {manifest['dtype']}, "
            f"{manifest.get('bytes_per_text', 0) / 1024:.1f} KB/text")
