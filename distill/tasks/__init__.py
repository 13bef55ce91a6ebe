"""Tasks: each registers a recipe schema and a runner. `task:` in a recipe picks one
(default: classification). Recipes are loaded here: YAML -> overrides -> schema -> checks."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from distill.config import apply_overrides, from_dict, load_yaml
from distill.errors import ConfigError
from distill.registry import Registry
from distill.tasks.sweep import check_sweep

TASKS = Registry("task", discover="distill.tasks")


def import_plugins(modules: Any) -> None:
    """Import user modules named in a recipe's `imports:` (they register extra methods/models)."""
    if not modules:
        return
    if not isinstance(modules, list):
        raise ConfigError(f"imports = {modules!r}: expected a list of module names")
    for name in modules:
        try:
            importlib.import_module(str(name))
        except ImportError as exc:
            raise ConfigError(f"imports: cannot import {name!r} ({exc})") from None


def load_recipe(path: str | Path, overrides: list[str] = ()) -> tuple[Any, Any]:
    """(task, config) for a recipe file with dotted overrides applied; raises ConfigError."""
    raw = apply_overrides(load_yaml(path), list(overrides))
    return build_recipe(raw)


def build_recipe(raw: dict) -> tuple[Any, Any]:
    import_plugins(raw.get("imports"))
    task_name = raw.get("task", "classification")
    entry = TASKS.get(str(task_name), field="task")
    cfg = from_dict(entry.config, raw)
    task = entry.obj
    task.check(cfg)
    check_sweep(cfg)
    return task, cfg
