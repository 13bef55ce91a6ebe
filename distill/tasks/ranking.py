"""`distill students`: a recipe's candidate students ranked by DisWOT at initialisation, without training.

What every task shares: the options of a recipe's `students:` section, candidate labels, the official
code's Gaussian initialisation, CPU latency, the ranked report and its table. Each task builds its
teacher and candidates and measures their features (`distill/tasks/<task>/students.py`); the math is
`distill.eval.diswot`.

The report is written beside the run folder, as `<output_dir>/<name>-students.json`, never inside it:
a run folder holding only this file would make the next `distill train` of the recipe ask for --resume.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from distill.config import option, to_dict
from distill.errors import ConfigError
from distill.eval.diswot import DisWOTScore
from distill.eval.footprint import count_parameters, cpu_latency
from distill.fileio import atomic_write_text
from distill.report.text import format_text_table, human_count

FORMULA = ("DisWOT (Dong et al., CVPR 2023): score = -(semantic + relation); semantic = mean squared difference of "
           "the row-normalised K x K Gram matrices of the final linear layer's CE weight gradients (teacher vs "
           "student), relation = the same for the N x N Gram matrices of the pre-pooling features; higher is better")
COLUMNS = ["rank", "candidate", "params", "latency ms/batch", "semantic dist", "relation dist", "DisWOT score"]


@dataclass(kw_only=True)
class RankingOptions:
    """How the candidates are scored (shared by the tasks' `students:` sections)."""

    batch_size: int = option(64, min=2, help="samples (LM: sequences) in the one scoring mini-batch, also the "
                             "latency batch; `distill students --batch-size` overrides it")
    teacher: Literal["trained", "random"] = option(
        "trained", help="trained: the recipe's teacher as `distill train` would use it; random: a freshly "
        "initialised copy of its architecture (the official DisWOT code's setting)")
    init: Literal["default", "gaussian"] = option(
        "default", help="default: each candidate's own initialisation; gaussian: the official code's re-"
        "initialisation (conv / linear weights N(0, 1), biases 0, norm layers 1 / 0), also of a random teacher")
    latency_runs: int = option(5, min=1, help="timed CPU forwards of the batch per candidate; the median is reported")
    latency_warmup: int = option(2, min=0, help="untimed forwards before the timed ones")


def candidate_label(label: str | None, name: str, kwargs: dict[str, Any]) -> str:
    """The label a candidate is listed under: its own, else `name(k=v, ...)`."""
    if label:
        return label
    options = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    return f"{name}({options})" if options else name


def check_labels(labels: list[str]) -> None:
    """Candidates need distinct labels (the table and the JSON are keyed by them)."""
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        if label in seen:
            raise ConfigError(f"students.candidates[{i}]: the label {label!r} is also candidate {seen[label]}'s; give "
                              "each candidate a distinct label")
        seen[label] = i


def require_candidates(cfg: Any) -> Any:
    """The recipe's `students:` section, or one line saying how to add it."""
    if cfg.students is None or not cfg.students.candidates:
        raise ConfigError("distill students: the recipe has no students.candidates; add a students section listing "
                          "candidate students (see README, 'Choosing a student without training')")
    return cfg.students


def scoring_seed(cfg: Any, seed: int | None) -> int:
    """The seed of the scoring batch and the candidates' initialisation: `seed`, else the recipe's."""
    if seed is not None and seed < 0:
        raise ConfigError(f"--seed = {seed}: must be >= 0")
    return cfg.seed if seed is None else seed


@torch.no_grad()
def gaussian_init(model: nn.Module) -> nn.Module:
    """The official DisWOT code's re-initialisation: conv / linear weights N(0, 1), their biases 0, norm layers 1 / 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def latency_ms(model: nn.Module, example: Tensor, opts: RankingOptions) -> float:
    """Median CPU milliseconds of one forward of the whole batch (eval mode)."""
    return 1000 * cpu_latency(model, example, runs=opts.latency_runs, warmup=opts.latency_warmup)


def candidate_row(label: str, spec: Any, model: nn.Module, latency: float, score: DisWOTScore) -> dict[str, Any]:
    return {"label": label, "spec": to_dict(spec), "params": count_parameters(model), "latency_ms": latency,
            "semantic_distance": score.semantic, "relation_distance": score.relation, "score": score.score}


def report_path(cfg: Any) -> Path:
    return Path(cfg.output_dir) / f"{cfg.name}-students.json"


def finish(cfg: Any, task: str, teacher: dict[str, Any], rows: list[dict[str, Any]], *, batch_size: int,
           seed: int, **fields: Any) -> dict[str, Any]:
    """Rank the candidates (best score first; fewer parameters first on a tie), write the JSON, return the report."""
    ranked = sorted(rows, key=lambda r: (-r["score"], r["params"]))
    for i, row in enumerate(ranked, 1):
        row["rank"] = i
    path = report_path(cfg)
    report = {"name": cfg.name, "task": task, "formula": FORMULA, "batch_size": batch_size, "seed": seed,
              "teacher_weights": cfg.students.teacher, "init": cfg.students.init, **fields, "teacher": teacher,
              "candidates": ranked, "path": str(path)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=2))
    return report


def format_ranking(report: dict[str, Any]) -> str:
    """The ranked table, under one line describing the teacher and the batch."""
    t = report["teacher"]
    head = (f"teacher {t['arch']} ({t['source']}): {human_count(t['params'])} params, {t['latency_ms']:.2f} ms/batch; "
            f"one batch of {report['batch_size']}, seed {report['seed']}, candidates at init ({report['init']})")
    rows = [[str(r["rank"]), r["label"], human_count(r["params"]), f"{r['latency_ms']:.2f}",
             f"{r['semantic_distance']:.4g}", f"{r['relation_distance']:.4g}", f"{r['score']:.4g}"]
            for r in report["candidates"]]
    return head + "\n" + format_text_table(COLUMNS, rows, left=2)
