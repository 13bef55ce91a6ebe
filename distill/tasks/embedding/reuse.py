"""Teacher embeddings taken from other stores instead of computed again (`store.reuse`).

A store's texts are not kept in it, only a 64-bit hash of each (the "text index", `text-index.safetensors`:
one int64 array per split, in row order, listed with its sha256 in the manifest under `extra_files`).
`distill cache` writes the index when it finishes a store, and adds it to a finished store written before
the index existed, or whose index was lost (re-running `distill cache` on the recipe that wrote it: no text
is encoded, the teacher's measured figures are kept).

A recipe whose data grew (more records per corpus, another file) names its old store in `store.reuse`:
every text that store holds is copied from it, and only the new texts go through the teacher. A reused
store must come from the same teacher files, teacher dtype, storage dtype and dimension, or the copied rows
would be another teacher's signal; that is checked before any row is taken. Copied rows are the old store's
bits; a text encoded again could differ from them by float32 noise (its length-sorted batch neighbours
differ): below float16 rounding in a float16 store, visible in the low bits of a float32 one. So a store built
with reuse equals a store cached from nothing up to that noise, not bit for bit.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from safetensors import safe_open

from distill.data.store import MANIFEST, StoreReader, StoreWriter, read_manifest, sha256_file
from distill.errors import DataError
from distill.tasks.embedding.signal import stored_table

TEXT_INDEX = "text-index.safetensors"
MATCHED_KEYS = ("teacher", "tokenizer_hash", "dtype", "dim", "teacher_dtype")  # what makes two stores' rows alike


def text_hashes(texts: Sequence[str]) -> np.ndarray:
    """(n,) int64: the first 8 bytes of each text's sha256 (a collision among 10^6 texts has odds ~10^-8)."""
    digests = b"".join(hashlib.sha256(t.encode()).digest()[:8] for t in texts)
    return np.frombuffer(digests, dtype="<i8").copy() if texts else np.zeros(0, np.int64)


def write_text_index(writer: StoreWriter, texts_by_split: dict[str, Sequence[str]]) -> None:
    """Write the store's text index. Refuses texts that are not one per stored row (the index would pair rows
    with other texts) and two texts of one hash (a lookup could not tell them)."""
    arrays = {split: text_hashes(texts) for split, texts in texts_by_split.items()}
    for split, texts in texts_by_split.items():
        if writer.done_examples(split) != len(texts):
            raise DataError(f"store {str(writer.root)!r}: split {split} holds {writer.done_examples(split)} rows "
                            f"for {len(texts)} texts")
        if len(np.unique(arrays[split])) != len(set(texts)):
            raise DataError(f"store {str(writer.root)!r}: two texts of split {split} share a 64-bit hash")
    writer.write_extra(TEXT_INDEX, arrays)


def index_entry(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The text index's `extra_files` entry, if the store lists one."""
    return next((f for f in manifest.get("extra_files", []) if f.get("file") == TEXT_INDEX), None)


def reused_rows(paths: Sequence[str], manifest: dict[str, Any]) -> dict[int, np.ndarray]:
    """text hash -> stored embedding row, from every store in `paths` (checked against the new store's
    `manifest`); the first store holding a text gives its row."""
    rows: dict[int, np.ndarray] = {}
    for path in paths:
        if not (Path(path) / MANIFEST).is_file():
            raise DataError(f"store.reuse: {path!r} is not a teacher-signal store (no {MANIFEST})")
        check_alike(path, read_manifest(Path(path)), manifest)  # before hashing its shards: fail fast
        reader = StoreReader(path)  # complete, checksums match (the text index's too)
        with safe_open(str(Path(path) / TEXT_INDEX), framework="np") as index:
            for split in reader.manifest["splits"]:
                table, keys = stored_table(reader, split).numpy(), index.get_tensor(split).tolist()
                if len(keys) != len(table):
                    raise DataError(f"store.reuse: {path!r}: split {split} has {len(table)} rows but "
                                    f"{len(keys)} text hashes")
                for key, row in zip(keys, table):
                    rows.setdefault(key, row)
    return rows


def index_intact(root: str | Path, manifest: dict[str, Any]) -> bool:
    """Whether the store lists a text index and the file matches its checksum."""
    entry, path = index_entry(manifest), Path(root) / TEXT_INDEX
    return entry is not None and path.is_file() and sha256_file(path) == entry["sha256"]


def check_alike(path: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    """One line when `old` (a store named in store.reuse) cannot give rows to the store described by `new`."""
    if old.get("kind") != "embedding":
        raise DataError(f"store.reuse: {path!r} is a {old.get('kind')} store, not a teacher-embedding store")
    for key in MATCHED_KEYS:
        if old.get(key) != new.get(key):
            raise DataError(f"store.reuse: {path!r} was written with another {key} ({old.get(key)!r} vs "
                            f"{new.get(key)!r} here): its rows are not this teacher's")
    if index_entry(old) is None:
        raise DataError(f"store.reuse: {path!r} has no text index (written before it existed): run `distill cache` "
                        "once more on the recipe that wrote it, which adds the index without encoding any text")


def fill_shard(texts: Sequence[str], known: dict[int, np.ndarray], encode: Callable[[list[str]], np.ndarray],
               dtype: np.dtype) -> tuple[np.ndarray, int]:
    """(n, D) rows of `texts` in `dtype`: known ones copied, the others from `encode(list) -> (m, D)`; and how
    many were encoded."""
    keys = text_hashes(texts).tolist()
    missing = [i for i, key in enumerate(keys) if key not in known]
    encoded = encode([texts[i] for i in missing]) if missing else None
    dim = encoded.shape[1] if encoded is not None else len(next(iter(known.values())))
    out = np.empty((len(texts), dim), dtype=dtype)
    for i, key in enumerate(keys):
        if key in known:
            out[i] = known[key]
    if missing:
        out[missing] = encoded.astype(dtype)
    return out, len(missing)
