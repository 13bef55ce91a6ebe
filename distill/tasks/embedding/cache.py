"""`distill cache` for embedding recipes: the teacher's embeddings of every distinct text, once.

Splits "train" and "eval" hold the recipe's training and held-out texts (by index, in the data
order), "suite" the texts the end-of-run evaluation reads at the recipe's eval limits (sorted), so
`distill train` from the store loads no teacher and still has the teacher's rows of the evaluation.
The manifest also keeps the teacher's own figures (size, sentences/s), measured here, and the store a text
index (a hash per row) by which a later recipe's `store.reuse` copies these rows instead of encoding the texts
again (distill.tasks.embedding.reuse). Writing resumes after the last complete shard (distill.data.store).
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
from distill.progress import progress_bar
from distill.tasks.embedding.data import dataset_fingerprint, texts_fingerprint
from distill.tasks.embedding.runner import recipe_data, suite_texts
from distill.tasks.embedding.schema import EmbeddingRecipe
from distill.tasks.embedding.reuse import fill_shard, index_intact, reused_rows, write_text_index
from distill.tasks.embedding.signal import embed_texts, load_teacher, teacher_identity
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
    splits = {"train": data.train.texts, "eval": data.held.texts, "suite": evaluated}
    renew_suite(writer, extra["suite_fingerprint"])
    if writer.manifest.get("complete"):
        if not index_intact(cfg.store.path, writer.manifest):  # an older store, or its index lost: no encoding
            write_text_index(writer, splits)
        return writer.manifest
    known = reused_rows(cfg.store.reuse, writer.manifest) if cfg.store.reuse else {}
    for split, texts in splits.items():
        cache_split(writer, split, texts, teacher, cfg, known)
    if cfg.store.reuse:
        copied = sum(s.get("copied", 0) for shards in writer.manifest["splits"].values() for s in shards)
        writer.set(reused={"stores": cfg.store.reuse, "texts": copied})
    return finish(writer, cfg, teacher, splits)


def renew_suite(writer: StoreWriter, fingerprint: str) -> None:
    """A store resumed after the eval suites or limits changed: its "suite" rows are another draw's, so they
    are cached again (the train and eval rows stay: the dataset fingerprint vouches for them)."""
    if writer.manifest.get("suite_fingerprint") != fingerprint:
        writer.drop_split("suite")
        writer.set(suite_fingerprint=fingerprint)


def cache_split(writer: StoreWriter, split: str, texts: list[str], teacher: TextEncoder, cfg: EmbeddingRecipe,
                known: dict[int, np.ndarray]) -> None:
    """Shards of (embeddings, index), resuming after the last complete one; rows of `known` texts (hash -> row,
    from store.reuse) are copied, and each shard's entry counts them. With nothing known every text of a shard
    is encoded as `embed_shards` does (the same chunks and batches): a run's embeddings equal the store's."""
    dtype, start = np.dtype(cfg.store.dtype), writer.done_examples(split)
    with progress_bar(total=len(texts), initial=start, desc=f"caching {split}", unit="text",
                      disable=not cfg.progress) as bar:
        for first in range(start, len(texts), cfg.store.texts_per_shard):
            chunk = texts[first:first + cfg.store.texts_per_shard]
            rows, encoded = fill_shard(chunk, known, lambda t: embed_texts(teacher, t, cfg.teacher.batch_size, bar)
                                       .numpy(), dtype)
            bar.update(len(chunk) - encoded)
            write_rows(writer, split, first, rows, copied=len(chunk) - encoded)


def write_rows(writer: StoreWriter, split: str, first: int, rows: np.ndarray, **meta: int) -> None:
    """One shard of texts first.. (rows in text order); `meta` goes to its manifest entry (rows copied)."""
    index = np.arange(first, first + len(rows), dtype=np.int64)
    writer.write_shard(split, {"embeddings": rows, "index": index}, examples=len(index), tokens=len(index), **meta)


def finish(writer: StoreWriter, cfg: EmbeddingRecipe, teacher: TextEncoder, splits: dict[str, list[str]]) -> dict[str, Any]:
    """Mark the store complete with its text index (what store.reuse matches texts by) and the teacher's
    figures (what the evaluation would measure of it)."""
    write_text_index(writer, splits)
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
    reused = manifest.get("reused")
    copied = f" ({reused['texts']:,} copied from {', '.join(reused['stores'])})" if reused else ""
    return (f"store {path}: teacher embeddings of {counts} texts{copied}, {manifest['dim']}-d {manifest['dtype']}, "
            f"{manifest.get('bytes_per_text', 0) / 1024:.1f} KB/text")
