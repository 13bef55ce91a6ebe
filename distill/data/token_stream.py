"""Deterministic, rank-sharded batches of token sequences.

The order of epoch e is a permutation seeded by (seed, e). Global step i takes the next
batch_size x world_size examples of that order and rank r takes its own batch_size slice, so
every rank sees distinct data and 2 ranks x batch b consume exactly the examples 1 rank x
batch 2b does. Steps that would not be full on every rank are dropped (every rank must take
the same number of steps).
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from distill.data.source import BatchSourceHooks
from distill.data.stream import mix_seed
from distill.data.text import IGNORE


def collate(examples: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Tensor]:
    """Right-pad to the longest example: input_ids, labels (-100 on padding), attention_mask, (B, L)."""
    length = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.as_tensor(e["input_ids"], dtype=torch.long)
        labels[i, :n] = torch.as_tensor(e["labels"], dtype=torch.long)
        mask[i, :n] = 1
    batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
    for key in SPARSE_KEYS:  # stored teacher targets: one row per valid position, example after example
        if key in examples[0]:
            batch[key] = torch.cat([e[key] for e in examples])
    if "aligned" in examples[0]:  # an aligned store's per-example teacher data (variable lengths: a list)
        batch["aligned"] = [e["aligned"] for e in examples]
    return batch


SPARSE_KEYS = ("teacher_topk_ids", "teacher_topk_logp", "teacher_tail_logp")


def next_token_targets(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """(labels (B, T-1), mask (B, T-1)): position i predicts token i+1; -100 and padding are masked."""
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    if "attention_mask" in batch:
        mask = mask & batch["attention_mask"][:, 1:].bool()
    return labels, mask


class TokenBatches(BatchSourceHooks):
    """Batches of {"input_ids", "labels", "attention_mask", "index"} from packed blocks or examples."""

    def __init__(self, examples: np.ndarray | list[dict[str, Any]], *, batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, pad_id: int = 0, shuffle: bool = True):
        self.examples, self.batch_size, self.seed = examples, batch_size, seed
        self.rank, self.world_size, self.pad_id, self.shuffle = rank, world_size, pad_id, shuffle

    def __len__(self) -> int:
        return len(self.examples) // (self.batch_size * self.world_size)

    def order(self, epoch: int) -> Tensor:
        n = len(self.examples)
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(self.seed, epoch)))

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict[str, Tensor]]:
        order = self.order(epoch)
        global_batch = self.batch_size * self.world_size
        for i in range(start, len(self)):
            mine = order[i * global_batch + self.rank * self.batch_size: i * global_batch + (self.rank + 1) * self.batch_size]
            yield self.make_batch(mine)

    def make_batch(self, index: Tensor) -> dict[str, Tensor]:
        if isinstance(self.examples, np.ndarray):  # packed blocks: every token is learned
            ids = torch.from_numpy(self.examples[index.numpy()].astype(np.int64))
            batch = {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}
        else:
            batch = collate([self.examples[int(i)] for i in index], self.pad_id)
        batch["index"] = index
        return batch

    def all_batches(self) -> Iterator[dict[str, Tensor]]:
        """Every example once, in order, this rank's share only (evaluation)."""
        n = len(self.examples)
        mine = torch.arange(n)[self.rank::self.world_size]
        for i in range(0, len(mine), self.batch_size):
            yield self.make_batch(mine[i:i + self.batch_size])
