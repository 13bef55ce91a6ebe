"""Deterministic batches of text records in a method's batch format (distill.methods.embedding_base).

The order of epoch e is a permutation seeded by (seed, e), and a batch is a function of its records
only, so a run resumed at (epoch, batch) sees exactly the batches an uninterrupted one would. The
last incomplete batch of an epoch is dropped: in-batch methods (similarity KD, contrastive KD) would
otherwise see one short row set per epoch.

`group_by_length` (data.group_by_length) cuts padding, the compute a batch spends on pad tokens: the
epoch's permutation is split into windows of GROUP_WINDOW batches, each window is sorted by the
records' lengths in characters and cut into batches, and the batches are shuffled (seeded by
(seed, epoch) too, so resuming still sees the same batches). This is Hugging Face's
`group_by_length` idea; it changes which texts share a batch, so in-batch negatives become texts of
like length.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor

from distill.data.source import BatchSourceHooks
from distill.data.stream import mix_seed
from distill.tasks.embedding.data import TextSplit

Tokenize = Callable[[list[str]], dict[str, Tensor]]
ROLES = {"pairs": ("query", "positive"), "triples": ("query", "positive", "negative")}
GROUP_WINDOW = 64  # batches per length-sorted window: wide enough to pad little, narrow enough to stay random


class TextBatches(BatchSourceHooks):
    """Batches of a `TextSplit` as "sentences", "pairs", "triples" or "lists" batches.

    Every sentences part carries the student's tokens (`tokenize(texts)`), the texts (a live teacher
    reads them) and their indices into `split.texts` (a stored teacher's rows), plus "label" when the
    split is labelled.
    """

    def __init__(self, split: TextSplit, batch_format: str, tokenize: Tokenize, *, batch_size: int, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = True, group_by_length: bool = False):
        self.split, self.format, self.tokenize = split, batch_format, tokenize
        self.batch_size, self.seed, self.shuffle, self.drop_last = batch_size, seed, shuffle, drop_last
        self.group_by_length = group_by_length

    def __len__(self) -> int:
        n = len(self.split.records)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> Tensor:
        n = len(self.split.records)
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(self.seed, epoch)))

    def batch_rows(self, epoch: int) -> list[list[int]]:
        """The record rows of each of epoch `epoch`'s batches, in the order they are trained on."""
        order = self.order(epoch).tolist()
        grouping = self.group_by_length and self.shuffle  # an unshuffled order stays as given
        if grouping:
            order = self.grouped(order)
        rows = [order[i * self.batch_size:(i + 1) * self.batch_size] for i in range(len(self))]
        if not grouping:
            return rows
        generator = torch.Generator().manual_seed(mix_seed(self.seed + 1, epoch))
        return [rows[i] for i in torch.randperm(len(rows), generator=generator).tolist()]

    def grouped(self, order: list[int]) -> list[int]:
        """`order` with each window of GROUP_WINDOW batches sorted by record length (longest first)."""
        window = GROUP_WINDOW * self.batch_size
        out: list[int] = []
        for start in range(0, len(order), window):
            out += sorted(order[start:start + window], key=self.record_length, reverse=True)
        return out

    def record_length(self, row: int) -> int:
        """Characters of the record's texts (of the first alone for sentences batches, which read only it)."""
        record = self.split.records[row]
        return sum(len(self.split.texts[i]) for i in (record[:1] if self.format == "sentences" else record))

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict[str, Any]]:
        for rows in self.batch_rows(epoch)[start:]:
            yield self.make_batch(rows)

    def make_batch(self, rows: Sequence[int]) -> dict[str, Any]:
        records = [self.split.records[r] for r in rows]
        if self.format == "sentences":
            labels = self.split.labels[list(rows)] if self.split.labels is not None else None
            return self.sentences([r[0] for r in records], labels)
        if self.format == "lists":
            return self.lists(records)
        return {role: self.sentences([r[k] for r in records]) for k, role in enumerate(ROLES[self.format])}

    def sentences(self, index: list[int], labels: Any = None) -> dict[str, Any]:
        texts = [self.split.texts[i] for i in index]
        batch = {**self.tokenize(texts), "text": texts, "index": torch.tensor(index, dtype=torch.long)}
        if labels is not None:
            batch["label"] = torch.as_tensor(labels, dtype=torch.long)
        return batch

    def lists(self, records: list[tuple[int, ...]]) -> dict[str, Any]:
        """Query i's candidates are rows i*N..(i+1)*N-1; a shorter list is padded with its own positive,
        masked out (a real text, so the encoders never see an empty string)."""
        n = max(len(r) - 1 for r in records)
        candidates, mask = [], torch.zeros(len(records), n, dtype=torch.bool)
        for i, r in enumerate(records):
            own = list(r[1:])
            mask[i, :len(own)] = True
            candidates += own + [own[0]] * (n - len(own))
        return {"query": self.sentences([r[0] for r in records]), "candidates": self.sentences(candidates),
                "candidate_mask": mask}

    def all_texts(self, batch_size: int) -> Iterator[dict[str, Any]]:
        """Unshuffled sentences batches over every record (labelled fits before training, LELP)."""
        rows = list(range(len(self.split.records)))
        for start in range(0, len(rows), batch_size):
            part = rows[start:start + batch_size]
            labels = self.split.labels[part] if self.split.labels is not None else None
            yield self.sentences([self.split.records[r][0] for r in part], labels)
