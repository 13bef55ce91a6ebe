"""The teacher-signal store: what a student needs from the teacher, computed once, sharded on disk.

Layout of a store folder:
  manifest.json          kind, teacher id + config hash, tokenizer hash, k, capture temperature,
                         dtype, dataset fingerprint, and per split the shards (file, sha256,
                         examples, tokens); `complete` once every split is written; `extra_files`
                         (file, sha256) beside the shards, checked with them
  tokenizer files        (causal_lm) so a student can train with no teacher folder at all
  <split>-NNNNN.safetensors
      causal_lm:       input_ids (int32, concatenated), loss_mask (uint8: labels = input_ids where 1,
                       else -100), example_offsets (int64, n+1),
                       topk_ids (int32, positions x k), topk_logp (float16, positions x k),
                       tail_logp (float16, positions), position_offsets (int64, n+1)
                       - one row per valid next-token position (labels[1:] != -100), in order
                       aligned stores (a teacher of another tokenizer) also hold teacher_ids (int32),
                       spans (int32, S x 6: student first/last token, teacher first/last token, bytes,
                       characters) with teacher_offsets / span_offsets (n+1), and the rows are the
                       teacher's own positions (Lt - 1 per example), each with token_logp (float32),
                       the log-prob of the teacher's actual next token
      classification:  logits (float32, n x C), index (int64, n): dataset indices

Writing is resumable: a shard is written to a temporary file, fsynced, renamed, and only then
added to the manifest (itself replaced atomically), so a run killed half-way resumes after its
last complete shard and never takes a partial shard as complete. Reading streams shard by shard
(memory-mapped safetensors) or gives random access by example.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from distill.errors import DataError
from distill.fileio import atomic_write_text

MANIFEST = "manifest.json"
FORMAT_VERSION = 2  # 2: labels stored as a uint8 loss mask (1 stored int32 labels); both read
IDENTITY_KEYS = ("kind", "teacher", "tokenizer_hash", "k", "temperature", "dtype", "dataset_fingerprint")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(root: Path) -> dict[str, Any]:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DataError(f"store {str(root)!r}: no {MANIFEST} (not a teacher-signal store)")
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise DataError(f"store {str(root)!r}: {MANIFEST} is not valid JSON") from None


class StoreWriter:
    """Appends shards to a store; `resume` continues a store with the same identity."""

    def __init__(self, root: str | Path, identity: dict[str, Any], extra: dict[str, Any], *, overwrite: bool = False):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        existing = self.root / MANIFEST
        if existing.is_file() and not overwrite:
            self.manifest = read_manifest(self.root)
            changed = [k for k in IDENTITY_KEYS if self.manifest.get(k) != identity.get(k)]
            if changed:
                raise DataError(f"store {str(self.root)!r} was written with a different {changed[0]} "
                                f"({self.manifest.get(changed[0])!r} vs {identity.get(changed[0])!r}); use --overwrite")
        else:
            for old in self.root.glob("*.safetensors"):
                old.unlink()
            self.manifest = {"format_version": FORMAT_VERSION, **identity, **extra, "splits": {}, "complete": False}
            self._save()
        for stale in self.root.glob(".tmp-*"):
            stale.unlink()  # a shard cut by a crash: never listed, so never trusted

    def done_examples(self, split: str) -> int:
        return sum(s["examples"] for s in self.manifest["splits"].get(split, []))

    def write_shard(self, split: str, arrays: dict[str, np.ndarray], examples: int, tokens: int, **meta: Any) -> None:
        shards = self.manifest["splits"].setdefault(split, [])
        name = f"{split}-{len(shards):05d}.safetensors"
        shards.append({"file": name, "sha256": self._write_file(name, arrays), "examples": examples, "tokens": tokens,
                       **meta})
        self._save()

    def write_extra(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        """Write (or replace) a file beside the shards, listed under `extra_files` and verified with them."""
        entry = {"file": name, "sha256": self._write_file(name, arrays)}
        others = [f for f in self.manifest.get("extra_files", []) if f["file"] != name]
        self.set(extra_files=others + [entry])

    def _write_file(self, name: str, arrays: dict[str, np.ndarray]) -> str:
        """Write arrays to `name` through a fsynced temporary (a crash leaves no partial file); returns its sha256."""
        tmp = self.root / f".tmp-{name}"
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.root / name)
        return sha256_file(self.root / name)

    def drop_split(self, split: str) -> None:
        """Forget a split's shards (listed first, so a crash leaves unlisted files, never listed missing ones)."""
        shards = self.manifest["splits"].pop(split, [])
        self.manifest["complete"] = False
        self._save()
        for shard in shards:
            (self.root / shard["file"]).unlink(missing_ok=True)

    def set(self, **fields: Any) -> None:
        self.manifest.update(fields)
        self._save()

    def _save(self) -> None:
        atomic_write_text(self.root / MANIFEST, json.dumps(self.manifest, indent=2))


def verify_store(root: str | Path) -> list[str]:
    """One line per problem (missing or corrupt shard, incomplete store); empty when all is well."""
    root = Path(root)
    manifest = read_manifest(root)
    problems = [] if manifest.get("complete") else [f"{root}: the store is incomplete (caching did not finish)"]
    listed = [shard for shards in manifest.get("splits", {}).values() for shard in shards]
    for entry in listed + manifest.get("extra_files", []):  # extra: files beside the shards (a text index)
        path = root / entry["file"]
        if not path.is_file():
            problems.append(f"{entry['file']}: missing")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{entry['file']}: checksum mismatch (corrupt or modified)")
    return problems


class StoreReader:
    """Reads a store, refusing (one line) a store that does not match the recipe or a corrupt shard."""

    def __init__(self, root: str | Path, expect: dict[str, Any] | None = None, check_sums: bool = True):
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        if not self.manifest.get("complete"):
            raise DataError(f"store {str(self.root)!r} is incomplete: run `distill cache` again to finish it")
        for key, want in (expect or {}).items():
            have = self.manifest.get(key)
            if have != want:
                raise DataError(f"store {str(self.root)!r} does not match this recipe: {key} is {have!r} in the store "
                                f"but {want!r} here (re-run `distill cache` for this recipe)")
        if check_sums:
            bad = [p for p in verify_store(self.root) if "checksum" in p or "missing" in p]
            if bad:
                raise DataError(f"store {str(self.root)!r}: {bad[0]}")

    def shards(self, split: str) -> list[dict[str, Any]]:
        return self.manifest["splits"].get(split, [])

    def load_shard(self, split: str, i: int) -> dict[str, torch.Tensor]:
        with safe_open(str(self.root / self.shards(split)[i]["file"]), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}

    def iter_shards(self, split: str) -> Iterator[dict[str, torch.Tensor]]:
        for i in range(len(self.shards(split))):
            yield self.load_shard(split, i)

    def examples(self, split: str) -> "StoredExamples":
        return StoredExamples(self, split)


class StoredExamples:
    """Random access by example over a causal_lm split (loads each shard once, lazily)."""

    def __init__(self, reader: StoreReader, split: str):
        self.reader, self.split = reader, split
        counts = [s["examples"] for s in reader.shards(split)]
        self.starts = np.cumsum([0] + counts)
        self._cache: dict[int, dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        shard = int(np.searchsorted(self.starts, i, side="right") - 1)
        if shard not in self._cache:
            self._cache[shard] = self.reader.load_shard(self.split, shard)
        data, j = self._cache[shard], i - int(self.starts[shard])
        a, b = int(data["example_offsets"][j]), int(data["example_offsets"][j + 1])
        p, q = int(data["position_offsets"][j]), int(data["position_offsets"][j + 1])
        input_ids = data["input_ids"][a:b].long()
        if "loss_mask" in data:
            labels = input_ids.masked_fill(data["loss_mask"][a:b] == 0, -100)
        else:  # format 1 stored the labels themselves
            labels = data["labels"][a:b].long()
        example = {"input_ids": input_ids.tolist(), "labels": labels.tolist()}
        if "teacher_ids" in data:  # a teacher of another tokenizer: its tokens, the alignment, its rows
            return {**example, "aligned": aligned_example(data, j)}
        return {**example, "teacher_topk_ids": data["topk_ids"][p:q], "teacher_topk_logp": data["topk_logp"][p:q],
                "teacher_tail_logp": data["tail_logp"][p:q]}


def aligned_example(data: dict[str, torch.Tensor], j: int) -> dict[str, torch.Tensor]:
    """Example j of an aligned shard: teacher ids, spans (S, 6), and the teacher's rows (top-k, tail, token log-prob)."""
    t0, t1 = int(data["teacher_offsets"][j]), int(data["teacher_offsets"][j + 1])
    s0, s1 = int(data["span_offsets"][j]), int(data["span_offsets"][j + 1])
    r0, r1 = int(data["position_offsets"][j]), int(data["position_offsets"][j + 1])
    return {"teacher_ids": data["teacher_ids"][t0:t1].long(), "spans": data["spans"][s0:s1].long(),
            "topk_ids": data["topk_ids"][r0:r1], "topk_logp": data["topk_logp"][r0:r1], "tail_logp": data["tail_logp"][r0:r1],
            "token_logp": data["token_logp"][r0:r1]}
