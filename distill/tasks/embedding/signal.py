"""The teacher's embeddings, however they are obtained: computed by a loaded teacher (once, in shards) or
read from a teacher-embedding store; and the teacher's identity a store is checked against.

`embed_shards` is the one way teacher embeddings are computed, for `distill cache` and for a run that
embeds its texts once (teacher.embeddings: once): the same shards, the same length-sorted batches,
the same float16 rounding, so training from a store equals training with the teacher bit for bit (a store
whose rows were partly copied by store.reuse: up to float32 noise, see distill.tasks.embedding.reuse).

Store layout (kind "embedding"): splits "train" and "eval" (the recipe's distinct training and
held-out texts, by index) and "suite" (the end-of-run evaluation's texts, sorted), shards of
`embeddings` (n, D) in store.dtype and `index` (n,) int64.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import Tensor

from distill.data.store import MANIFEST, StoreReader
from distill.errors import DataError
from distill.models.encoders import TextEncoder, load_sentence_encoder
from distill.models.hf import resolve_dtype
from distill.progress import progress_bar
from distill.tasks.embedding.schema import TEXTS_PER_SHARD, EmbeddingRecipe

SAMPLED_BYTES = 1 << 20  # of each large file hashed into the teacher's identity (head and tail)


def load_teacher(cfg: EmbeddingRecipe) -> TextEncoder:
    return load_sentence_encoder(cfg.teacher.path, resolve_dtype(cfg.teacher.dtype)).eval()


def teacher_identity(path: str) -> dict[str, str]:
    """The folder's name and a hash of its files: JSON files whole, larger ones by size, head and tail (a
    110M teacher's weights are not read in full to check a store)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"teacher.path: {path!r} is not a folder")
    digest = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        size = f.stat().st_size
        digest.update(f"{f.relative_to(root)}|{size}|".encode())
        with open(f, "rb") as handle:
            if size <= 2 * SAMPLED_BYTES:
                digest.update(handle.read())
            else:
                digest.update(handle.read(SAMPLED_BYTES))
                handle.seek(size - SAMPLED_BYTES)
                digest.update(handle.read())
    return {"name": root.name, "files_sha256": digest.hexdigest()[:16]}


@torch.no_grad()
def embed_texts(encoder: TextEncoder, texts: Sequence[str], batch_size: int, bar=None) -> Tensor:
    """(N, D) float32 embeddings, batched by length (little padding), returned in the given order."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.empty(len(texts), encoder.dim)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        out[rows] = encoder.encode([texts[i] for i in rows], batch_size=len(rows))
        if bar is not None:
            bar.update(len(rows))
    return out


def embed_shards(encoder: TextEncoder, texts: Sequence[str], *, texts_per_shard: int, batch_size: int,
                 start: int = 0, progress: bool = True, desc: str = "teacher") -> Iterator[tuple[int, Tensor]]:
    """(first index, (n, D) float32 embeddings) per shard of `texts`, from shard start `start` on."""
    with progress_bar(total=len(texts), initial=start, desc=desc, unit="text", disable=not progress) as bar:
        for first in range(start, len(texts), texts_per_shard):
            yield first, embed_texts(encoder, texts[first:first + texts_per_shard], batch_size, bar)


def embedding_table(encoder: TextEncoder, texts: Sequence[str], *, batch_size: int, dtype: torch.dtype,
                    texts_per_shard: int = TEXTS_PER_SHARD, progress: bool = True, desc: str = "teacher") -> Tensor:
    """(N, D) teacher embeddings of `texts` in `dtype`, computed as `distill cache` computes a store's."""
    parts = [e for _, e in embed_shards(encoder, texts, texts_per_shard=texts_per_shard, batch_size=batch_size,
                                        progress=progress, desc=desc)]
    return torch.cat(parts).to(dtype) if parts else torch.empty(0, encoder.dim, dtype=dtype)


def open_store(cfg: EmbeddingRecipe, fingerprint: str) -> StoreReader:
    """The recipe's store, verified against its data (and teacher, when the recipe names one)."""
    if not (Path(cfg.store.path) / MANIFEST).is_file():
        raise DataError(f"store {cfg.store.path!r} does not exist yet: run `distill cache` on this recipe first "
                        "(or drop the store section to train with the teacher)")
    expect = {"kind": "embedding", "dataset_fingerprint": fingerprint, "dtype": cfg.store.dtype}
    if cfg.teacher is not None:
        expect["teacher"] = teacher_identity(cfg.teacher.path)
    return StoreReader(cfg.store.path, expect=expect)


def stored_table(reader: StoreReader, split: str) -> Tensor:
    """A split's stored embeddings (n, D), in the stored dtype, ordered by text index."""
    parts = list(reader.iter_shards(split))
    if not parts:
        return torch.empty(0, int(reader.manifest["dim"]), dtype=getattr(torch, reader.manifest["dtype"]))
    index, table = torch.cat([p["index"] for p in parts]), torch.cat([p["embeddings"] for p in parts])
    out = torch.empty_like(table)
    out[index] = table
    return out


class TableEncoder:
    """`encode(texts)` by lookup in a table of known texts (the store's evaluation texts): the teacher's rows of
    the end-of-run evaluation without loading it."""

    def __init__(self, texts: list[str], table: Tensor):
        self.row = {t: i for i, t in enumerate(texts)}
        self.table = table

    def __call__(self, texts: Sequence[str]) -> Tensor:
        missing = next((t for t in texts if t not in self.row), None)
        if missing is not None:
            raise DataError(f"the store holds no teacher embedding of the evaluation text {missing[:60]!r}: "
                            "re-run `distill cache` with this recipe's eval section")
        return self.table[[self.row[t] for t in texts]].float()
