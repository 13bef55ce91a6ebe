"""Deterministic batches over in-memory arrays, resumable at any batch.

The order of epoch e is a permutation seeded by (seed, e), and the augmentation of batch i of
epoch e uses a generator seeded by (seed, e, i). Nothing depends on earlier batches, so a resumed
run that starts at (epoch, batch) sees exactly the data an uninterrupted run would.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from distill.data.augment import Augment, no_augment
from distill.data.source import BatchSourceHooks


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from several integers (stable across runs and platforms)."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value ^ (int(part) + 0x9E3779B97F4A7C15 + (value << 6) + (value >> 2))) & ((1 << 63) - 1)
    return value


class ArrayBatches(BatchSourceHooks):
    """Batches of {"x": float (B, C, H, W) normalized, "y": int64 (B,), "index": int64 (B,)}."""

    def __init__(self, images: Tensor, labels: Tensor, *, batch_size: int, mean: list[float], std: list[float],
                 seed: int = 0, augment: Augment = no_augment, shuffle: bool = True, drop_last: bool = False):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels
        self.batch_size, self.seed, self.augment = batch_size, seed, augment
        self.shuffle, self.drop_last = shuffle, drop_last
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> Tensor:
        n = len(self.labels)
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(self.seed, epoch)))

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict[str, Tensor]]:
        """Batches `start`, `start + 1`, ... of `epoch`."""
        order = self.order(epoch)
        for i in range(start, len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield self.make_batch(index, torch.Generator().manual_seed(mix_seed(self.seed, epoch, i)))

    def make_batch(self, index: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        x = self.augment(self.images[index], generator).float().div_(255)
        return {"x": (x - self.mean) / self.std, "y": self.labels[index], "index": index}


def normalize(images: Tensor, mean: list[float], std: list[float]) -> Tensor:
    """uint8 (N, C, H, W) -> normalized float32."""
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (images.float() / 255 - m) / s
