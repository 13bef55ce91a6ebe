"""The classification task: image classifiers distilled with any registered method."""
from __future__ import annotations

from typing import Any

from distill.tasks import TASKS
from distill.tasks.classification import cache as cache_module
from distill.tasks.classification import runner
from distill.tasks.classification.schema import ClassificationRecipe
from distill.tasks.skeleton import Task


@TASKS.register("classification", config=ClassificationRecipe)
class ClassificationTask(Task):
    """Image classification: teacher stage, CE baseline and a distillation method."""

    check = staticmethod(runner.check)

    @staticmethod
    def run(cfg: ClassificationRecipe, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
        return runner.run(cfg, resume=resume, overwrite=overwrite)

    @staticmethod
    def cache(cfg: ClassificationRecipe, *, overwrite: bool = False) -> dict[str, Any]:
        return cache_module.cache(cfg, overwrite=overwrite)
