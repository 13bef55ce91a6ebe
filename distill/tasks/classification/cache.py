"""`distill cache` for classification: the teacher's full logits on the unaugmented train and test images.

Training from the store replaces the teacher forward by a lookup by sample index, so it is exact
only without augmentation (the stored logits are of the plain images): recipes that read a
store must set data.augment: none.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from distill.data.store import StoreWriter, sha256_file
from distill.errors import ConfigError
from distill.eval import predict_logits
from distill.tasks.classification.data import dataset_fingerprint
from distill.tasks.classification.runner import ClassificationRun, teacher_stage
from distill.tasks.classification.schema import ClassificationRecipe
from distill.tasks.skeleton import Run
from distill.train.core import set_determinism

TEACHER_KEYS = ("seed", "data", "teacher")  # what decides the teacher stage a store is cached from


def cache(cfg: ClassificationRecipe, *, overwrite: bool = False) -> dict[str, Any]:
    if cfg.store is None or cfg.teacher is None:
        raise ConfigError("distill cache needs a teacher section and a store section (path)")
    set_determinism(cfg.seed, cfg.threads)
    # a teacher stage may be trained in the run folder first, or reused from an earlier run of the same teacher
    folder = Run(cfg, resume=False, overwrite=False, reuse_keys=TEACHER_KEYS, purpose="distill cache")
    ctx = ClassificationRun(cfg, folder)
    teacher, _ = teacher_stage(ctx, cfg.teacher, "teacher", cfg.seed)
    weights = sha256_file(folder.path / "teacher" / "model.safetensors")
    identity = {"kind": "classification", "teacher": {"name": cfg.teacher.name, "weights_sha256": weights[:16]},
                "tokenizer_hash": None, "k": ctx.data.num_classes, "temperature": 1.0, "dtype": "float32",
                "dataset_fingerprint": dataset_fingerprint(cfg)}
    writer = StoreWriter(cfg.store.path, identity, {"classes": ctx.data.classes}, overwrite=overwrite)
    splits = {"train": ctx.data.train_x, "test": ctx.data.test_x}
    for split, images in splits.items():
        for start in range(writer.done_examples(split), len(images), cfg.store.examples_per_shard):
            part = images[start:start + cfg.store.examples_per_shard]
            logits = predict_logits(teacher, part, ctx.data.mean, ctx.data.std, cfg.store.batch_size)
            index = np.arange(start, start + len(part), dtype=np.int64)
            writer.write_shard(split, {"logits": logits.numpy().astype(np.float32), "index": index},
                               examples=len(part), tokens=len(part))
    size = sum((Path(cfg.store.path) / s["file"]).stat().st_size for v in writer.manifest["splits"].values() for s in v)
    writer.set(complete=True, bytes_per_token=size / max(sum(len(v) for v in splits.values()), 1))
    return writer.manifest
