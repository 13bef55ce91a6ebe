"""`distill sweep RECIPE`: an Optuna search over recipe keys, every trial a normal run folder.

    <output_dir>/<name>-sweep/
      recipe.yaml        the recipe as swept (CLI overrides applied; compared on --resume)
      teacher/, store/   what the task builds once for every trial (classification: the teacher and
                         its stored logits, `distill/tasks/classification/sweep.py`)
      trial-000/ ...     run folders written by the same code as `distill train` (`task.run`), with the
                         trial's values as dotted overrides; trial.json holds its state and values
      study.log          Optuna's journal (what --resume continues)
      summary.json       the space, every trial (values, per-epoch metric, state), the best one
      best.yaml          the recipe with the best trial's values: `distill train best.yaml`
      report.html        the trials compared (distill/report/sweep.py)

Trials are pruned early: each evaluation of the method's student stage reports the metric to Optuna
(through `distill.train.observe`), and a trial the pruner stops keeps its folder, marked pruned.
Optuna is an optional dependency (`pip install distill[sweep]`), imported only here.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from distill.config import apply_overrides, diff_keys, load_yaml
from distill.errors import ConfigError, DistillError, NonFiniteLossError
from distill.fileio import atomic_write_text
from distill.report.sweep import build_sweep_report, trial_line
from distill.tasks import build_recipe
from distill.tasks.sweep import Param, SweepSpec, override, search_space
from distill.train.observe import watch_evaluations

MISSING_OPTUNA = "distill sweep needs Optuna, an optional dependency: pip install distill[sweep]"


def import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise DistillError(MISSING_OPTUNA) from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial gets our own line instead
    return optuna


def sweep_dir(cfg: Any) -> Path:
    return Path(cfg.output_dir) / f"{cfg.name}-sweep"


def sweep(recipe: str | Path, overrides: list[str] = (), *, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Run the sweep of a recipe file; returns the summary (also in <sweep>/summary.json)."""
    raw = apply_overrides(load_yaml(recipe), list(overrides))
    raw["sweep"] = raw.get("sweep") or {}  # no sweep section: the defaults
    task, cfg = build_recipe(raw)  # the space is checked here, before any work
    optuna = import_optuna()
    spec: SweepSpec = cfg.sweep
    space = search_space(cfg)
    folder = open_folder(sweep_dir(cfg), raw, resume=resume, overwrite=overwrite)
    shared = task.prepare_sweep(cfg, folder)
    study = open_study(optuna, spec, cfg, folder, space, resume)
    state = {"raw": raw, "folder": folder, "shared": shared, "space": space, "spec": spec, "recipe": str(recipe),
             "task": cfg.task}
    done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    print(f"sweep {folder}: {spec.trials} trials ({len(done)} done), {spec.metric} "
          f"({'max' if spec.maximize() else 'min'}imized) on {scored_on(shared)}; pruner {spec.pruner}; searching "
          + ", ".join(f"{p.key} ({p.describe()})" for p in space), flush=True)
    try:
        study.optimize(lambda trial: objective(optuna, trial, state), n_trials=max(spec.trials - len(done), 0),
                       callbacks=[lambda _study, frozen: finish_trial(frozen, state)])
    finally:  # also when a trial stops the sweep (an error, Ctrl-C): what ran so far is kept
        summary = write_summary(study, state)
        build_sweep_report(folder)
    if summary["best"] is None:
        raise DistillError(f"{folder}: no trial finished ({', '.join(f'{v} {k}' for k, v in counts(summary).items())})"
                           "; see summary.json")
    return summary


def open_folder(folder: Path, raw: dict[str, Any], *, resume: bool, overwrite: bool) -> Path:
    """Create the sweep folder, or reopen it with --resume (same recipe but for sweep.trials)."""
    saved = folder / "recipe.yaml"
    if resume and saved.is_file():
        before = yaml.safe_load(saved.read_text())
        changed = [d for d in diff_keys(before, raw) if not d.startswith("sweep.trials")]
        if changed:
            raise ConfigError(f"--resume: the recipe differs from the sweep in {folder}: {'; '.join(changed[:3])} "
                              "(start it again with --overwrite; only sweep.trials may change)")
    elif folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise ConfigError(f"{folder} already holds a sweep: pass --resume to continue it or --overwrite to start again")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, yaml.safe_dump(raw, sort_keys=False))
    return folder


def open_study(optuna: Any, spec: SweepSpec, cfg: Any, folder: Path, space: list[Param], resume: bool) -> Any:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(folder / "study.log")))
    study = optuna.create_study(storage=storage, pruner=build_pruner(optuna, spec), study_name=cfg.name,
                                direction="maximize" if spec.maximize() else "minimize", load_if_exists=resume)
    # seeded per session: a resumed sweep with the first session's seed would draw the first session's values again
    seed = (cfg.seed if spec.seed is None else spec.seed) + len(study.trials)
    study.sampler = optuna.samplers.TPESampler(seed=seed) if spec.sampler == "tpe" else optuna.samplers.RandomSampler(seed=seed)
    for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(stale.number, state=optuna.trial.TrialState.FAIL)  # a trial the last session left running
    if not study.trials and spec.include_defaults and all(p.contains(p.default) for p in space):
        study.enqueue_trial({p.key: p.optuna_value(p.default) for p in space}, user_attrs={"defaults": True})
    return study


def build_pruner(optuna: Any, spec: SweepSpec) -> Any:
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.prune_after_trials, n_warmup_steps=spec.prune_after_epochs)
    if spec.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(spec.prune_after_epochs, 1))
    return optuna.pruners.NopPruner()


def objective(optuna: Any, trial: Any, state: dict[str, Any]) -> float:
    """One trial: the recipe with the trial's values, run by the task as `distill train` runs it."""
    spec, folder = state["spec"], state["folder"]
    values = {p.key: p.suggest(trial) for p in state["space"]}
    if trial.user_attrs.get("defaults"):
        values = {p.key: p.default for p in state["space"]}  # exactly the recipe's values (no rounding)
    name = f"trial-{trial.number:03d}"
    trial.set_user_attr("values", values)
    trial.set_user_attr("folder", name)
    started, reported = time.perf_counter(), {}
    extra = ["sweep=null", f"name={name}", override("output_dir", str(folder))]
    task, cfg = build_recipe(apply_overrides(state["raw"], state["shared"] + extra + trial_overrides(values)))
    stage = f"student-{cfg.method.name}"
    trial.set_user_attr("stage", stage)

    def listen(stage_name: str, epoch: int, metrics: dict[str, Any], final: bool) -> None:
        if stage_name != stage:
            return
        value = metric_of(metrics, spec.metric, stage)
        if epoch not in reported:  # Optuna keeps the first value of a step (evaluations within an epoch)
            reported[epoch] = value
            trial.set_user_attr("epochs", {str(k): v for k, v in reported.items()})
            trial.report(value, epoch)
        if not final and trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")

    try:
        with watch_evaluations(listen):
            summary = task.run(cfg, overwrite=True)
    except NonFiniteLossError as exc:  # a diverging corner of the space: the trial fails, the sweep goes on
        trial.set_user_attr("error", str(exc))
        return math.nan
    finally:
        trial.set_user_attr("seconds", time.perf_counter() - started)
    return metric_of(summary["stages"][stage], spec.metric, stage)


def trial_overrides(values: dict[str, Any]) -> list[str]:
    return [override(k, v) for k, v in values.items()]


def metric_of(figures: dict[str, Any], metric: str, stage: str) -> float:
    if metric not in figures or not isinstance(figures[metric], (int, float)):
        found = ", ".join(k for k, v in figures.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        raise ConfigError(f"sweep.metric = {metric!r}: the {stage} stage reports no such figure; it reports: {found}")
    return float(figures[metric])


# ----------------------------------------------------------------------------- results

def finish_trial(frozen: Any, state: dict[str, Any]) -> None:
    """After each trial: its line, its trial.json, and the summary so far."""
    record = trial_record(frozen)
    folder = state["folder"] / record["folder"]
    if folder.is_dir():
        atomic_write_text(folder / "trial.json", json.dumps(record, indent=2))
    print(trial_line(record, state["spec"].trials, state["spec"].metric), flush=True)


def trial_record(frozen: Any) -> dict[str, Any]:
    attrs = frozen.user_attrs
    state = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}.get(frozen.state.name, frozen.state.name.lower())
    epochs = {int(k): v for k, v in attrs.get("epochs", {}).items()}
    value = frozen.value if state == "complete" else (epochs[max(epochs)] if epochs else None)
    return {"number": frozen.number, "state": state, "value": value, "values": attrs.get("values", {}),
            "epochs": epochs, "seconds": attrs.get("seconds"), "folder": attrs.get("folder", f"trial-{frozen.number:03d}"),
            "stage": attrs.get("stage"), "defaults": bool(attrs.get("defaults")), "error": attrs.get("error")}


def write_summary(study: Any, state: dict[str, Any]) -> dict[str, Any]:
    """summary.json and best.yaml (the recipe with the best trial's values)."""
    spec, folder = state["spec"], state["folder"]
    trials = [trial_record(t) for t in study.get_trials(deepcopy=False)]
    complete = [t for t in trials if t["state"] == "complete"]
    pick = max if spec.maximize() else min
    best = pick(complete, key=lambda t: t["value"]) if complete else None
    defaults = next((t for t in trials if t["defaults"]), None)
    summary = {"kind": "sweep", "name": state["raw"]["name"], "task": state["task"], "recipe": state["recipe"],
               "folder": str(folder), "report": str(folder / "report.html"),
               "metric": spec.metric, "direction": "maximize" if spec.maximize() else "minimize",
               "scored_on": scored_on(state["shared"]), "shared_overrides": state["shared"],
               "space": {p.key: space_entry(p) for p in state["space"]}, "trials": trials, "best": best,
               "defaults": defaults, "best_recipe": None}
    if best is not None:
        recipe = best_recipe(state["raw"], best["values"])
        atomic_write_text(folder / "best.yaml", yaml.safe_dump(recipe, sort_keys=False))
        summary["best_recipe"] = str(folder / "best.yaml")
        summary["best_overrides"] = trial_overrides(best["values"])
    atomic_write_text(folder / "summary.json", json.dumps(summary, indent=2, default=str))
    return summary


def space_entry(p: Param) -> dict[str, Any]:
    return {"kind": p.kind, "low": p.low, "high": p.high, "log": p.log, "step": p.step,
            "choices": list(p.choices) or None, "default": p.default, "describe": p.describe()}


def best_recipe(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The swept recipe with the best values, as a plain recipe (no sweep section) named <name>-best."""
    recipe = apply_overrides(raw, trial_overrides(values))
    recipe.pop("sweep", None)
    recipe["name"] = f"{raw['name']}-best"
    return recipe


def scored_on(shared: list[str]) -> str:
    fraction = next((o.split("=", 1)[1] for o in shared if o.startswith("data.validation=")), None)
    if fraction is not None:
        return f"a validation split ({100 * float(fraction):g}% of the training images, not trained on)"
    return "the recipe's evaluation split"


def counts(summary: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in summary["trials"]:
        out[t["state"]] = out.get(t["state"], 0) + 1
    return out
