"""The causal-LM task: Hugging Face teachers and students, token-level distillation, DDP."""
from __future__ import annotations

from typing import Any

from distill.tasks import TASKS
from distill.tasks.causal_lm import cache as cache_module
from distill.tasks.causal_lm import runner, students
from distill.tasks.causal_lm.schema import CausalLMRecipe
from distill.tasks.skeleton import Task


@TASKS.register("causal_lm", config=CausalLMRecipe)
class CausalLMTask(Task):
    """Causal language models: frozen teacher, token-level divergences, chunked loss, DDP."""

    left_columns = 1

    @staticmethod
    def check(cfg: CausalLMRecipe) -> None:
        runner.check(cfg)
        students.check_candidates(cfg)

    @staticmethod
    def run(cfg: CausalLMRecipe, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any] | None:
        return runner.run(cfg, resume=resume, overwrite=overwrite)

    @staticmethod
    def cache(cfg: CausalLMRecipe, *, overwrite: bool = False) -> dict[str, Any]:
        return cache_module.cache(cfg, overwrite=overwrite)

    @staticmethod
    def rank_students(cfg: CausalLMRecipe, *, seed: int | None = None) -> dict[str, Any]:
        return students.rank_students(cfg, seed=seed)
