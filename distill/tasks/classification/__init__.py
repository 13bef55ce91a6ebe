"""The classification task: image classifiers distilled with any registered method."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.tasks import TASKS
from distill.tasks.classification import cache as cache_module
from distill.tasks.classification import runner, students
from distill.tasks.classification import sweep as sweep_module
from distill.tasks.classification.schema import ClassificationRecipe
from distill.tasks.skeleton import Task


@TASKS.register("classification", config=ClassificationRecipe)
class ClassificationTask(Task):
    """Image classification: teacher stage, CE baseline and a distillation method."""

    @staticmethod
    def check(cfg: ClassificationRecipe) -> None:
        runner.check(cfg)
        students.check_candidates(cfg)

    @staticmethod
    def run(cfg: ClassificationRecipe, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
        return runner.run(cfg, resume=resume, overwrite=overwrite)

    @staticmethod
    def cache(cfg: ClassificationRecipe, *, overwrite: bool = False) -> dict[str, Any]:
        return cache_module.cache(cfg, overwrite=overwrite)

    @staticmethod
    def rank_students(cfg: ClassificationRecipe, *, seed: int | None = None) -> dict[str, Any]:
        return students.rank_students(cfg, seed=seed)

    @staticmethod
    def prepare_sweep(cfg: ClassificationRecipe, folder: Path) -> list[str]:
        return sweep_module.prepare_sweep(cfg, folder)
