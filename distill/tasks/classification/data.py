"""Classification data: the recipe's dataset and held-out split, its fingerprint, stored teacher logits.

Both the runner and `distill cache` import this module (and the cache imports the runner): data
and store identity live here so that the import graph runs one way.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from distill.config import to_dict
from distill.data import hf_source
from distill.data.cache import source_fingerprint
from distill.data.images import DATASETS, ImageSplits
from distill.data.store import StoreReader
from distill.data.subset import subset_indices
from distill.errors import ConfigError, DataError
from distill.tasks.classification.schema import ClassificationRecipe


def load_data(cfg: ClassificationRecipe) -> tuple[ImageSplits, ImageSplits | None]:
    """(data, held-out split or None): the held-out part is removed from data's training split. With
    data.validation, data's test split is a fraction of the training images, removed from its train split."""
    data = hf_source.image_splits(cfg.data.hf) if cfg.data.hf is not None else build_named(cfg)
    if cfg.data.train_subset:
        keep = subset_indices(len(data.train_y), cfg.data.train_subset)
        data.train_x, data.train_y = data.train_x[keep], data.train_y[keep]
    if cfg.data.test_subset:
        keep = subset_indices(len(data.test_y), cfg.data.test_subset)
        data.test_x, data.test_y = data.test_x[keep], data.test_y[keep]
    if cfg.data.validation:  # the held-back training images become the evaluation split; test is not read
        data = data.hold_out(cfg.data.validation, seed=0)
        data.name = data.name.replace("(held-out split)", "(validation split)")
    if len(data.train_y) == 0 or len(data.test_y) == 0:
        raise DataError(f"dataset {cfg.data.label()!r} has an empty train or test split")
    if not cfg.data.hold_out:
        return data, None
    split = data.hold_out(cfg.data.hold_out, seed=0)  # train -> (train part, held-out part)
    held = ImageSplits(split.test_x, split.test_y, data.test_x, data.test_y, data.classes, data.default_augment,
                       data.name, data.mean, data.std)
    data.train_x, data.train_y = split.train_x, split.train_y
    return data, held


def build_named(cfg: ClassificationRecipe) -> ImageSplits:
    """The registered dataset `data.name`, built with data.root and data.options."""
    builder = DATASETS.get(cfg.data.name, field="data.name").obj
    try:
        return builder(cfg.data.root, **cfg.data.options)
    except TypeError as exc:
        raise ConfigError(f"data.options: {exc}") from None


def dataset_fingerprint(cfg: ClassificationRecipe) -> str:
    """What decides the stored examples: the data section with the source folder's content fingerprint."""
    d = cfg.data
    root = source_fingerprint(Path(d.root)) if d.root and Path(d.root).exists() else str(d.root)
    data = {**to_dict(d), "root": root}
    data.pop("hf")  # without hf the fingerprint is what it was before data.hf existed (stores stay valid)
    if d.hf is not None:  # its content, not just its spec; streaming or not reads the same rows
        data["hf"] = hf_source.fingerprint(d.hf)
    settings = json.dumps(data, sort_keys=True)
    return hashlib.sha256(settings.encode()).hexdigest()[:16]


def open_store(cfg: ClassificationRecipe) -> StoreReader:
    """The recipe's store, verified against this recipe's data."""
    return StoreReader(cfg.store.path, expect={"kind": "classification", "dataset_fingerprint": dataset_fingerprint(cfg)})


def load_logits(reader: Any, split: str) -> torch.Tensor:
    """All stored logits of a split, ordered by sample index."""
    parts = list(reader.iter_shards(split))
    index = torch.cat([p["index"] for p in parts])
    logits = torch.cat([p["logits"] for p in parts])
    out = torch.empty_like(logits)
    out[index] = logits
    return out
