"""The `sweep:` section of a recipe and its search space (what `distill sweep` searches; the engine
is `distill/sweep.py`).

    sweep:
      trials: 20
      params:                                   # dotted recipe keys; omitted: the defaults below
        method.temperature: {low: 1, high: 8, log: true}
        train.lr: {low: 0.01, high: 0.2, log: true}
        train.schedule: {choices: [cosine, step]}
        student.kwargs.channels: {choices: [[4, 8, 16], [8, 16, 32]]}

A key must name a field of the recipe as loaded (so `method.*` keys are the method's own options)
or a key of a mapping it holds (`student.kwargs.*`); ranges and choices are checked against the
field's type and bounds when the recipe loads, so an unknown key or an out-of-range bound stops
before any work with one line. Without `params`, the search covers the method's `temperature`
(from min(1, T) to max(8, 2T)), its positive `kd_weight` / `ce_weight` and `train.lr` (each a
quarter to four times the recipe's value), all on a log scale. Numbers of a float range are rounded
to 4 significant digits, so what a trial ran is what best.yaml says.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union, get_args, get_origin

import yaml

from distill.config import check_value, from_dict, option
from distill.errors import ConfigError
from distill.registry import suggest

# top-level keys no trial may change, and why
FIXED = {**dict.fromkeys(("task", "name", "output_dir", "sweep", "imports"), "it decides where and what the trials are"),
         **dict.fromkeys(("teacher", "extra_teachers", "store", "data"),
                         "the teacher, its store and the validation split are built once, for every trial")}
RAISES = ("accuracy", "agreement", "probe_accuracy")  # figures where higher is better (the rest: lower)


@dataclass(kw_only=True)
class ParamSpec:
    """One searched key: a number range (low, high; log scale; step) or a list of choices."""

    low: Optional[float] = option(None, help="smallest value of a number range")
    high: Optional[float] = option(None, help="largest value of a number range")
    log: bool = option(False, help="sample the range on a log scale (low must be > 0)")
    step: Optional[float] = option(None, min=0.0, min_exclusive=True, help="grid step of the range (not with log)")
    choices: Optional[list[Any]] = option(None, help="values to choose from (numbers, strings, lists, mappings)")


@dataclass(kw_only=True)
class SweepSpec:
    """`distill sweep`: an Optuna search over recipe keys; every trial is a normal run folder."""

    trials: int = option(20, min=1, help="trials in all (with --resume: including those already run)")
    metric: str = option("accuracy", help="the figure of the method's student stage that is optimised "
                         "(classification: accuracy, nll, ece, agreement; causal_lm: perplexity, ...)")
    direction: Optional[Literal["maximize", "minimize"]] = option(
        None, help="default: maximize for accuracy and agreement, minimize for the other figures")
    validation: float = option(0.1, min=0.0, max=0.5, help="classification: trials are scored on this fraction of "
                               "the training split, held out of their training, so the test split stays unseen "
                               "until the best recipe is trained; 0 scores them on the test split (optimistic)")
    sampler: Literal["tpe", "random"] = option("tpe", help="Optuna's TPE sampler (its first 10 trials are random) "
                                               "or random search")
    seed: Optional[int] = option(None, min=0, help="the sampler's seed (default: the recipe's seed)")
    pruner: Literal["median", "halving", "none"] = option(
        "median", help="stop a trial early when its metric after an epoch is worse than the median of finished "
        "trials at that epoch (median), by successive halving (halving), or never (none)")
    prune_after_trials: int = option(4, min=0, help="the median pruner starts once this many trials finished")
    prune_after_epochs: int = option(2, min=0, help="no trial is pruned before this many epochs")
    include_defaults: bool = option(True, help="trial 0 runs the recipe's own values (when they lie in the "
                                    "space), so the best trial is never worse than the defaults on the metric")
    params: dict[str, Any] = option(default_factory=dict, help="dotted recipe key -> {low, high, log, step} or "
                                    "{choices: [...]}; default: the method's temperature and weights, and train.lr")

    def maximize(self) -> bool:
        return self.direction == "maximize" if self.direction else self.metric in RAISES


@dataclass(frozen=True)
class Param:
    """A resolved search dimension: `kind` float / int (a range) or choice, and the recipe's own value."""

    key: str
    kind: Literal["float", "int", "choice"]
    default: Any
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """This dimension's value for an Optuna trial (choices travel as their YAML text, as Optuna keeps
        only plain scalars)."""
        if self.kind == "choice":
            return self.choices[[encode(c) for c in self.choices].index(
                trial.suggest_categorical(self.key, [encode(c) for c in self.choices]))]
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        value = trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)
        return value if self.step else min(max(float(f"{value:.4g}"), self.low), self.high)

    def optuna_value(self, value: Any) -> Any:
        return encode(value) if self.kind == "choice" else value

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.choices
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def describe(self) -> str:
        if self.kind == "choice":
            return "choices " + ", ".join(yaml_text(c) for c in self.choices)
        scale = ", log" if self.log else f", step {self.step:g}" if self.step else ""
        return f"{self.kind} {self.low:g} .. {self.high:g}{scale}"


def encode(value: Any) -> str | int | float | bool | None:
    """A value as Optuna keeps it: plain scalars as they are, anything else as one line of YAML."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else yaml_text(value)


def yaml_text(value: Any) -> str:
    """One line of YAML that reads back as `value` (the right side of a `key=value` override)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10 ** 9).strip()
    return text[:-4].strip() if text.endswith("\n...") else text


def override(key: str, value: Any) -> str:
    return f"{key}={yaml_text(value)}"


# ----------------------------------------------------------------------------- the space

def default_params(cfg: Any) -> dict[str, dict[str, Any]]:
    """The default space: the method's temperature and positive kd/ce weights, and the learning rate."""
    method = {f.name: getattr(cfg.method, f.name) for f in dataclasses.fields(cfg.method)}
    out: dict[str, dict[str, Any]] = {}
    t = method.get("temperature")
    if isinstance(t, float):
        out["method.temperature"] = {"low": min(1.0, t), "high": max(8.0, 2 * t), "log": True}
    for name in ("kd_weight", "ce_weight"):
        v = method.get(name)
        if isinstance(v, float) and v > 0:
            out[f"method.{name}"] = {"low": v / 4, "high": 4 * v, "log": True}
    out["train.lr"] = {"low": cfg.train.lr / 4, "high": 4 * cfg.train.lr, "log": True}
    return out


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{train: {lr: {...}}} (what a `sweep.params.train.lr=...` override makes) -> {"train.lr": {...}}."""
    spec_keys = {f.name for f in dataclasses.fields(ParamSpec)}
    out = {}
    for key, value in params.items():
        key = f"{prefix}{key}"
        if isinstance(value, dict) and value and not set(value) & spec_keys:
            out.update(flatten(value, key + "."))
        else:
            out[key] = value
    return out


def search_space(cfg: Any) -> list[Param]:
    """The recipe's sweep section resolved against the recipe; one ConfigError line for a bad key or bound."""
    raw = flatten(cfg.sweep.params) if cfg.sweep.params else default_params(cfg)
    return [resolve(cfg, key, from_dict(ParamSpec, spec, f"sweep.params.{key}")) for key, spec in raw.items()]


def resolve(cfg: Any, key: str, spec: ParamSpec) -> Param:
    where = f"sweep.params.{key}"
    top = key.split(".")[0]
    if top in FIXED:
        raise ConfigError(f"{where}: {top} cannot be swept ({FIXED[top]})")
    hint, meta, current = field_of(cfg, key)
    inner = _strip_optional(hint)
    ranged = spec.low is not None or spec.high is not None
    if spec.choices is not None:
        if ranged or spec.log or spec.step:
            raise ConfigError(f"{where}: give choices or a range (low, high), not both")
        if not spec.choices:
            raise ConfigError(f"{where}.choices: give at least one value")
        choices = spec.choices if hint is Any else [check_value(c, hint, meta, f"{where}.choices[{i}]")
                                                    for i, c in enumerate(spec.choices)]
        return Param(key, "choice", current, choices=tuple(choices))
    if not ranged:
        if inner is bool or get_origin(inner) is Literal:
            return Param(key, "choice", current, choices=(False, True) if inner is bool else get_args(inner))
        raise ConfigError(f"{where}: give low and high (a number range) or choices: [...]")
    if spec.low is None or spec.high is None:
        raise ConfigError(f"{where}: a range needs both low and high")
    integral = inner is int or (inner is Any and isinstance(current, int) and not isinstance(current, bool))
    if inner not in (int, float, Any) or isinstance(current, bool):
        raise ConfigError(f"{where}: {key} is not a number; give choices: [...]")
    if integral and not all(float(v).is_integer() for v in (spec.low, spec.high, spec.step or 1)):
        raise ConfigError(f"{where}: {key} is an integer; low, high and step must be whole numbers")
    if not spec.low < spec.high:
        raise ConfigError(f"{where}: low ({spec.low:g}) must be below high ({spec.high:g})")
    if spec.log and (spec.low <= 0 or spec.step):
        raise ConfigError(f"{where}: a log range needs low > 0 and no step")
    if hint is not Any:
        for bound, value in (("low", spec.low), ("high", spec.high)):
            check_value(int(value) if integral else value, hint, meta, f"{where}.{bound}")
    return Param(key, "int" if integral else "float", current, low=spec.low, high=spec.high, log=spec.log,
                 step=spec.step)


def field_of(cfg: Any, key: str) -> tuple[Any, dict, Any]:
    """(type hint, option metadata, current value) of a dotted key of a loaded recipe; keys of a mapping
    field (model kwargs) have hint Any and are checked by the recipe's own checks when a trial loads."""
    node, hint, meta = cfg, type(cfg), {}
    parts = key.split(".")
    for i, part in enumerate(parts):
        here = ".".join(parts[:i + 1])
        if node is None and dataclasses.is_dataclass(_strip_optional(hint)):
            raise ConfigError(f"sweep.params: {here}: {'.'.join(parts[:i])} is not set in the recipe")
        if dataclasses.is_dataclass(node):
            fields = {f.name: f for f in dataclasses.fields(node) if f.init}
            if part not in fields:
                raise ConfigError(f"sweep.params: {here}: unknown key{suggest(part, list(fields))}; "
                                  f"valid keys: {', '.join(fields)}")
            hint, meta = typing.get_type_hints(type(node))[part], fields[part].metadata
            node = getattr(node, part)
        elif isinstance(node, dict) or (node is None and hint is Any):
            hint, meta, node = Any, {}, (node or {}).get(part)
        else:
            raise ConfigError(f"sweep.params: {here}: {'.'.join(parts[:i])} is a value, not a section")
    return hint, dict(meta), node


def _strip_optional(hint: Any) -> Any:
    if get_origin(hint) in (Union, types.UnionType):
        inner = [a for a in get_args(hint) if a is not type(None)]
        return inner[0] if len(inner) == 1 else hint
    return hint


def check_sweep(cfg: Any) -> None:
    """Load-time check of a recipe's sweep section (called by `distill.tasks.build_recipe`)."""
    if getattr(cfg, "sweep", None) is not None:
        search_space(cfg)
