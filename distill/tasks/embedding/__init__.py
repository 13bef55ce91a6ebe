"""The sentence-embedding task: a frozen teacher encoder, a student encoder in its space (LEAF and the other
embedding methods), a sentence-transformers export, transfer and retrieval evaluation."""
from __future__ import annotations

from typing import Any

from distill.tasks import TASKS
from distill.tasks.embedding import cache as cache_module
from distill.tasks.embedding import runner
from distill.tasks.embedding.schema import EmbeddingRecipe
from distill.tasks.skeleton import Task


@TASKS.register("embedding", config=EmbeddingRecipe)
class EmbeddingTask(Task):
    """Sentence embeddings: teacher encoder (or its stored embeddings), student encoder, transfer / retrieval eval."""

    left_columns = 1

    @staticmethod
    def check(cfg: EmbeddingRecipe) -> None:
        runner.check(cfg)

    @staticmethod
    def run(cfg: EmbeddingRecipe, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
        return runner.run(cfg, resume=resume, overwrite=overwrite)

    @staticmethod
    def cache(cfg: EmbeddingRecipe, *, overwrite: bool = False) -> dict[str, Any]:
        return cache_module.cache(cfg, overwrite=overwrite)

    @staticmethod
    def describe_store(cfg: EmbeddingRecipe, manifest: dict[str, Any]) -> str:
        return cache_module.describe(manifest, cfg.store.path)
