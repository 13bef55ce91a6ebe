"""What every task shares: the run folder and its stages, the summary, and method/task checks.

A task is a recipe schema plus a `Task` subclass registered in `TASKS` (`distill/tasks/<task>/`).
Its `run` opens a `Run`, executes stages through `Run.stage` (finished stages are skipped on
--resume), and ends with `Run.write_summary`, which stores the task's table in summary.json so
the report and the CLI print it without knowing the task. Method/task compatibility is checked
from the method's class attributes (`task`, `needs_teacher`, `needs_live_teacher`,
`requires_on_policy`), and every message lists the methods that would fit, taken from the registry.

    runs/<name>/
      config.yaml       the resolved recipe (compared on --resume)
      <stage>/          checkpoints/, metrics.jsonl, the exported model, done.json when finished
      summary.json      name, task, dataset, method, config, stages, table {columns, rows}
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import yaml

from distill.config import diff_keys, dump_yaml, to_dict
from distill.errors import ConfigError
from distill.fileio import atomic_write_text
from distill.methods.base import METHODS, Method, MethodConfig, method_names
from distill.report.text import format_text_table

CONFIG, DONE, SUMMARY = "config.yaml", "done.json", "summary.json"


# ----------------------------------------------------------------------------- method checks

def check_method(method: MethodConfig, task: str, *, teacher: bool, store: bool,
                 on_policy_lmbda: float | None = None) -> type[Method]:
    """The method's class after checking it fits this recipe; one ConfigError line naming what would fit."""
    cls = METHODS.get(method.name, field="method.name").obj
    name = f"method.name = {method.name!r}"
    if cls.task != task:
        raise ConfigError(f"{name} is a {cls.task} method; this is a {task} recipe "
                          f"({task} methods: {', '.join(method_names(task))})")
    if cls.needs_teacher and not teacher and not store:
        raise ConfigError(f"{name} needs a teacher: add a teacher or a store section "
                          f"(methods without a teacher: {', '.join(method_names(task, needs_teacher=False))})")
    if cls.needs_teacher and store and not teacher and cls.needs_live_teacher:
        usable = method_names(task, needs_teacher=True, needs_live_teacher=False)
        raise ConfigError(f"{name} needs the live teacher (features, new inputs or several teachers); a store holds "
                          f"the teacher's outputs only: use one of {', '.join(usable)}")
    if cls.requires_on_policy and (on_policy_lmbda is None or on_policy_lmbda < 1):
        raise ConfigError(f"{name} learns from the student's own samples: add an on_policy section with lmbda: 1")
    return cls


def baseline_method(task: str) -> MethodConfig:
    """The config of the task's label-only baseline (the method registered with `baseline = True`)."""
    names = method_names(task, baseline=True)
    if not names:
        raise ConfigError(f"task {task!r} registers no baseline method")
    entry = METHODS.get(names[0])
    return entry.config(name=entry.name)


# ----------------------------------------------------------------------------- the run folder

class Run:
    """`<output_dir>/<name>/`: created, or reopened with --resume (the recipe must not have changed).

    `reuse_keys` opens an existing folder whose config agrees on those top-level keys only
    (`distill cache` trains or reuses the teacher stage there, whatever the student side says).
    Only rank 0 writes.
    """

    def __init__(self, cfg: Any, *, resume: bool, overwrite: bool, rank: int = 0,
                 reuse_keys: tuple[str, ...] | None = None, purpose: str = "--resume"):
        self.cfg, self.rank, self.resume = cfg, rank, resume or reuse_keys is not None
        self.path = Path(cfg.output_dir) / cfg.name
        if rank != 0:  # rank 0 checks and creates the folder (the others would race it)
            return
        saved = self.path / CONFIG
        if saved.is_file() and (resume or reuse_keys is not None):
            self._check_same(yaml.safe_load(saved.read_text()), reuse_keys, purpose)
            return
        if self.path.exists() and any(self.path.iterdir()):
            if not overwrite:
                raise ConfigError(f"{self.path} already holds a run: pass --resume to continue it or --overwrite "
                                  "to start again")
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(saved, dump_yaml(cfg))

    def _check_same(self, before: dict, keys: tuple[str, ...] | None, purpose: str) -> None:
        now = to_dict(self.cfg)
        if keys is not None:
            before, now = ({k: d.get(k) for k in keys} for d in (before, now))
        # progress bars, `distill students` candidates and the sweep section do not change what a run trains
        changed = [d for d in diff_keys(before, now) if not d.startswith(("progress", "students", "sweep"))]
        if not changed:
            return
        if keys is None:
            raise ConfigError(f"--resume: the recipe differs from the run in {self.path}: {'; '.join(changed[:3])} "
                              "(start it again with --overwrite, or give the recipe another name)")
        raise ConfigError(f"{purpose}: {self.path} holds a run of another recipe ({'; '.join(changed[:3])}) whose "
                          f"teacher cannot be reused: delete that folder, or give this recipe another name "
                          f"(name=...) or output_dir")

    def stage_dir(self, name: str) -> Path:
        return self.path / name

    def finished(self, name: str) -> dict[str, Any] | None:
        """The stored result of a finished stage when resuming, else None."""
        done = self.stage_dir(name) / DONE
        return json.loads(done.read_text()) if self.resume and done.is_file() else None

    def stage(self, name: str, execute: Callable[[Path], dict[str, Any]],
              reuse: Callable[[Path, dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Run one stage (`execute(folder) -> result`), or, when it finished before, hand its result
        (and folder) to `reuse` and skip it."""
        folder = self.stage_dir(name)
        done = self.finished(name)
        if done is not None:
            if reuse is not None:
                reuse(folder, done)
            return done
        result = execute(folder)
        if self.rank == 0:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(folder / DONE, json.dumps(result, indent=2))
        return result

    def write_summary(self, task: str, stages: dict[str, dict[str, Any]],
                      table: Callable[[dict[str, Any]], tuple[list[str], list[list[str]]]], **fields: Any) -> dict[str, Any]:
        """summary.json: the stages' results and the task's table (what the report and CLI print)."""
        summary = {"name": self.cfg.name, "task": task, "method": self.cfg.method.name, **fields,
                   "config": to_dict(self.cfg), "stages": stages}
        columns, rows = table(summary)
        summary["table"] = {"columns": list(columns), "rows": rows}
        if self.rank == 0:
            atomic_write_text(self.path / SUMMARY, json.dumps(summary, indent=2))
        return summary


# ----------------------------------------------------------------------------- the task interface

class Task:
    """A task's entry in `TASKS`: check, run and (optionally) cache a recipe; print its summary."""

    left_columns = 2  # table columns printed left-aligned

    @staticmethod
    def check(cfg: Any) -> None:
        """Load-time checks beyond the schema's types and bounds."""

    @staticmethod
    def run(cfg: Any, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any] | None:
        raise NotImplementedError

    @staticmethod
    def cache(cfg: Any, *, overwrite: bool = False) -> dict[str, Any]:
        raise ConfigError(f"task {cfg.task!r} has no teacher-signal store")

    @staticmethod
    def describe_store(cfg: Any, manifest: dict[str, Any]) -> str:
        """The line `distill cache` prints about the store it wrote (default: top-k logit stores)."""
        perplexity = manifest.get("teacher_eval_perplexity")
        return (f"store {cfg.store.path}: k={manifest['k']}, T={manifest['temperature']}, {manifest['dtype']}, "
                f"{manifest.get('bytes_per_token', 0):.1f} bytes/token"
                + (f", teacher held-out perplexity {perplexity:.2f}" if perplexity is not None else ""))

    @staticmethod
    def rank_students(cfg: Any, *, seed: int | None = None) -> dict[str, Any]:
        """`distill students`: the recipe's candidate students ranked without training (distill.tasks.ranking)."""
        raise ConfigError(f"task {cfg.task!r} has no training-free student ranking")

    @staticmethod
    def prepare_sweep(cfg: Any, folder: Path) -> list[str]:
        """`distill sweep`: build once, under `folder`, what every trial shares (a trained teacher, a store of
        its outputs) and return the overrides that make a trial use it and score on held-out data
        (`cfg.sweep.validation`). Default: none; each trial runs the recipe as it is."""
        return []

    @classmethod
    def format_summary(cls, summary: dict[str, Any]) -> str:
        table = summary["table"]
        return format_text_table(table["columns"], table["rows"], left=cls.left_columns)

    @staticmethod
    def run_dir(cfg: Any) -> Path:
        return Path(cfg.output_dir) / cfg.name
