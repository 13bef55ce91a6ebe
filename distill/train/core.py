"""The one training core: step, accumulate, evaluate, checkpoint, resume.

Every loop (teacher stage, offline distillation, LLM, on-policy) drives this class. It never looks
at what the objective computes: the objective returns a dict of named loss parts with a "loss"
entry, and every part is logged.

The objective and the batch source follow `distill.train.protocols` (every hook stated and
defaulted; the Trainer calls them directly).

Gradient accumulation: a step's batch is split into `grad_accum` micro-batches and micro-batch i
is weighted by count_i / total_count, where `objective.count(micro)` is the number of examples
by default (an LLM objective counts valid tokens instead). The objective returns a *mean* over its
micro-batch, so the accumulated gradient equals the gradient of the mean over the whole step.
Across data-parallel ranks the counts are all-reduced first, and the weight is multiplied by the
world size because DDP averages gradients over ranks.

Resume: checkpoints hold model, optimizer, step, data position (epoch, batch) and RNG states;
learning-rate schedules are functions of the step and batches are functions of
(seed, epoch, batch), so a resumed run reproduces an uninterrupted one bit for bit on CPU. With
`train.distributed: fsdp` the tensors go to torch.distributed.checkpoint instead (`distill.train.fsdp`),
written by every rank and loadable at any world size.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from distill.progress import progress_bar

from distill.errors import CheckpointError, ConfigError, NonFiniteLossError
from distill.modes import eval_mode
from distill.train import checkpoint as ckpt
from distill.train import fsdp
from distill.train.config import TrainConfig
from distill.train.observe import notify_evaluation
from distill.train.optim import build_optimizer, lr_factor, set_lr
from distill.train.protocols import BatchSource, Objective, missing_members


def split_batch(batch: dict[str, Any], parts: int) -> list[dict[str, Any]]:
    """Split every tensor (and per-example list) of a batch along dim 0 into `parts` nearly equal micro-batches."""
    if parts == 1:
        return [batch]
    size = next(v.shape[0] for v in batch.values() if isinstance(v, Tensor))
    bounds = torch.linspace(0, size, parts + 1).round().long().tolist()
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi > lo:
            out.append({k: (v[lo:hi] if (isinstance(v, Tensor) and v.dim() and v.shape[0] == size)
                            or (isinstance(v, list) and len(v) == size) else v) for k, v in batch.items()})
    return out


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Trainer:
    """Runs one training stage of `modules` (all trainable) on `objective`.

    Args:
        stage_dir: folder for checkpoints/ and metrics.jsonl.
        modules: name -> module whose parameters are trained and checkpointed (for example
            {"student": ..., "method": ...}); the first one is the model that gets exported.
        objective: an `Objective`: batch -> {"loss": scalar, "<part>": scalar, ...} plus its hooks.
        batches: a `BatchSource`: deterministic batches, checkpointable state, log figures.
        cfg: the stage's TrainConfig.
        evaluate: optional () -> {metric: value}, called every `cfg.eval_every` epochs and at the end.
        frozen: modules that must never be optimized (the teacher); checked, not trained.
        ddp_module: when running data-parallel, the DDP-wrapped module (for no_sync).
        sharded_module: under `train.distributed: fsdp` with several ranks, the FSDP2 root the task
            sharded (`distill.train.fsdp`); checkpoints are then written by every rank in DCP format.
    """

    def __init__(self, *, stage_dir: Path, modules: dict[str, nn.Module], objective: Objective, batches: BatchSource,
                 cfg: TrainConfig, evaluate: Callable[[], dict[str, float]] | None = None,
                 frozen: tuple[nn.Module, ...] = (), progress: bool = True, desc: str = "train",
                 ddp_module: nn.Module | None = None, swa_bn_inputs: Callable[[], Iterator[Any]] | None = None,
                 sharded_module: nn.Module | None = None):
        _check_protocol(objective, Objective, "objective", "distill.train.protocols.ObjectiveHooks")
        _check_protocol(batches, BatchSource, "batches", "distill.data.source.BatchSourceHooks")
        self.stage_dir, self.modules, self.objective = Path(stage_dir), modules, objective
        self.batches, self.cfg, self.evaluate = batches, cfg, evaluate
        self.progress, self.desc, self.ddp_module = progress, desc, ddp_module
        self.rank, self.world_size = world()
        if cfg.distributed == "fsdp" and self.world_size > 1 and sharded_module is None:
            raise ConfigError(f"train.distributed: fsdp: {desc} does not shard its models under torchrun "
                              "(causal_lm does): use distributed: ddp")
        self.optimizer = build_optimizer(self._trainable(frozen), cfg)
        self.steps_per_epoch = len(batches)
        if self.steps_per_epoch == 0:
            raise ValueError("the training data yields no batch: it is empty or smaller than one batch")
        epoch_steps = cfg.epochs * self.steps_per_epoch
        self.total_steps = min(cfg.max_steps, epoch_steps) if cfg.max_steps else epoch_steps
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.step_seconds = 0.0  # time inside optimizer steps only (no evaluation, checkpoints or data waits)
        self.data_seconds = 0.0  # time spent producing batches (on-policy generation happens here)
        self.history: list[dict[str, Any]] = []
        self.swa = SWA(next(iter(modules.values())), swa_bn_inputs) if cfg.swa_start_epoch is not None else None

    # ------------------------------------------------------------------ setup

    def _trainable(self, frozen: tuple[nn.Module, ...]) -> list[nn.Parameter]:
        frozen_ids = {id(p) for m in frozen for p in m.parameters()}
        seen, params = set(), []
        for module in self.modules.values():
            for p in module.parameters():
                if p.requires_grad and id(p) not in seen:
                    if id(p) in frozen_ids:
                        raise RuntimeError("a frozen (teacher) parameter reached the optimizer")
                    seen.add(id(p))
                    params.append(p)
        if not params:
            raise ValueError("nothing to train: no module has a parameter with requires_grad=True")
        return params

    @property
    def checkpoint_dir(self) -> Path:
        return self.stage_dir / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        return self.stage_dir / "metrics.jsonl"

    # ------------------------------------------------------------------ run

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to the end of the schedule; returns the last evaluation's metrics."""
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self._resume()
        elif self.rank == 0 and self.metrics_path.exists():
            self.metrics_path.unlink()
        last_eval: dict[str, Any] = {}
        bar = progress_bar(total=self.total_steps, initial=self.step, desc=self.desc, unit="step",
                           disable=not self.progress or self.rank != 0, leave=True)
        with bar:
            while self.step < self.total_steps:
                last_eval = self._run_epoch(bar) or last_eval
        if not last_eval and self.evaluate is not None:
            last_eval = self._evaluate()
        return last_eval

    def _run_epoch(self, bar: tqdm) -> dict[str, Any] | None:
        for module in self.modules.values():
            module.train()
        self.objective.on_epoch_start(self.epoch)
        sums: dict[str, float] = {}
        since, tick = 0, time.perf_counter()
        wait_start = time.perf_counter()
        for batch in self.batches.epoch(self.epoch, self.batch_in_epoch):
            step_start = time.perf_counter()
            self.data_seconds += step_start - wait_start
            parts = self._step(batch)
            self.step_seconds += time.perf_counter() - step_start
            self.step += 1
            self.batch_in_epoch += 1
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            since += 1
            bar.update(1)
            if self.step % self.cfg.log_every == 0 or self.step == self.total_steps:
                self._log_train(sums, since, time.perf_counter() - tick, bar)
                sums, since, tick = {}, 0, time.perf_counter()
            epoch_done = self.batch_in_epoch >= self.steps_per_epoch
            if self.step >= self.total_steps or epoch_done:
                break
            if self._step_eval_due() and self.evaluate is not None:
                self._evaluate()  # before this step's checkpoint: state the evaluation changes is saved with it
            if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
                self._save()
            ckpt.crash_point("DISTILL_TEST_KILL_AT_STEP", self.step, self.desc)
            wait_start = time.perf_counter()
        return self._end_epoch()

    def _step_eval_due(self) -> bool:
        return bool(self.cfg.eval_every_steps) and self.step % self.cfg.eval_every_steps == 0

    def _end_epoch(self) -> dict[str, Any] | None:
        finished = self.step >= self.total_steps
        if self.batch_in_epoch >= self.steps_per_epoch:
            if self.swa is not None and self.epoch >= self.cfg.swa_start_epoch:
                self.swa.update()
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        if finished and self.swa is not None:
            self.swa.apply()
        result = None
        # a step evaluation due on an epoch's last step is taken here (the step loop breaks before it)
        if finished or self.epoch % self.cfg.eval_every == 0 or self._step_eval_due():
            result = self._evaluate() if self.evaluate is not None else None
        self._save()
        ckpt.crash_point("DISTILL_TEST_KILL_AT_STEP", self.step, self.desc)
        return result

    # ------------------------------------------------------------------ one step

    def _step(self, batch: dict[str, Any]) -> dict[str, float]:
        micro = split_batch(batch, self.cfg.grad_accum)
        weights = self._micro_weights(micro)
        set_lr(self.optimizer, self._lr())
        totals: dict[str, Tensor] = {}
        for i, (mb, weight) in enumerate(zip(micro, weights)):
            sync = self.ddp_module is None or i == len(micro) - 1
            with self._no_sync(not sync), self._autocast():
                parts = self.objective(mb)
            self._check_finite(parts)
            (parts["loss"] * weight).backward()
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + v.detach().float() * (weight / self.world_size)
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], self.cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        values = self._global_mean(totals)
        # stateful schedules (TAID's t) update once per optimizer step, identically on every rank
        self.objective.on_step_end(self.step + 1, self.total_steps, values)
        return values

    def _global_mean(self, totals: dict[str, Tensor]) -> dict[str, float]:
        """The step's loss parts averaged over ranks (each rank's value is already divided by world size)."""
        if self.world_size > 1 and totals:
            keys = sorted(totals)
            packed = torch.stack([totals[k].reshape(()) for k in keys]).double()
            dist.all_reduce(packed)
            return {k: float(v) for k, v in zip(keys, packed)}
        return {k: float(v) * self.world_size for k, v in totals.items()}

    def _lr(self) -> float:
        if self.swa is not None and self.cfg.swa_lr and self.epoch >= self.cfg.swa_start_epoch:
            return self.cfg.swa_lr
        return self.cfg.lr * lr_factor(self.step, self.total_steps, self.steps_per_epoch, self.cfg)

    def _micro_weights(self, micro: list[dict[str, Any]]) -> list[float]:
        counts = [float(self.objective.count(mb)) for mb in micro]
        total = sum(counts)
        if self.world_size > 1:
            t = torch.tensor([total], dtype=torch.float64)
            dist.all_reduce(t)
            total = float(t)
        # DDP averages gradients over ranks; scale so the result is the global mean
        return [c / total * self.world_size if total > 0 else 0.0 for c in counts]

    def _no_sync(self, skip_sync: bool):
        if skip_sync and self.ddp_module is not None:
            return self.ddp_module.no_sync()
        return contextlib.nullcontext()

    def _autocast(self):
        if not self.cfg.bf16:
            return contextlib.nullcontext()
        device = "cuda" if any(p.is_cuda for g in self.optimizer.param_groups for p in g["params"]) else "cpu"
        return torch.autocast(device, dtype=torch.bfloat16)

    def _check_finite(self, parts: dict[str, Tensor]) -> None:
        if bool(torch.isfinite(parts["loss"]).all()):
            return
        shown = ", ".join(f"{k}={float(v.detach().float().mean()):.4g}" for k, v in parts.items())
        bad = [k for k, v in parts.items() if k != "loss" and not bool(torch.isfinite(v).all())] or ["loss"]
        raise NonFiniteLossError(f"{self.desc}: step {self.step + 1}: loss part '{bad[0]}' is not finite ({shown}); "
                                 f"stopped, the last good checkpoint is untouched")

    # ------------------------------------------------------------------ logging and eval

    def _log_train(self, sums: dict[str, float], count: int, seconds: float, bar: tqdm) -> None:
        record = {"kind": "train", "step": self.step, "epoch": self.epoch + self.batch_in_epoch / self.steps_per_epoch,
                  "lr": self.optimizer.param_groups[0]["lr"], "steps_per_s": count / max(seconds, 1e-9)}
        record.update({k: v / count for k, v in sums.items()})
        record.update(self.batches.log_stats())
        bar.set_postfix(loss=f"{record['loss']:.4f}")
        self._write(record)

    def _evaluate(self) -> dict[str, Any]:
        with eval_mode(*self.modules.values()):
            metrics = self.evaluate() if self.evaluate is not None else {}
        self.batches.observe_validation(metrics)
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        self._write({"kind": "eval", "step": self.step, "epoch": self.epoch, **scalars})
        # `distill sweep` reports it to its search engine (and may stop the stage here)
        notify_evaluation(self.desc, self.epoch, scalars, self.step >= self.total_steps)
        return metrics

    def _write(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.rank != 0:
            return
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ checkpoints

    def _state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "total_steps": self.total_steps,
                "rng": ckpt.rng_state(), "objective": self.objective.extra_state(), "batches": self.batches.state()}

    def _save(self) -> None:
        if self.cfg.distributed == "fsdp":  # every rank writes its shards (DCP); rank 0 writes state.json
            fsdp.write_dcp_checkpoint(self.checkpoint_dir, self.step, nn.ModuleDict(self.modules), self.optimizer,
                                      self._state(), self.cfg.keep_checkpoints, self.desc)
            return
        if self.rank != 0:
            return
        weights = {f"{name}/{k}": v for name, m in self.modules.items() for k, v in m.state_dict().items()}
        state = self._state()
        if self.swa is not None:
            weights.update({f"swa/{k}": v for k, v in self.swa.average.items()})
            state["swa_count"] = self.swa.count
        ckpt.write_checkpoint(self.checkpoint_dir, self.step, weights, self.optimizer, state, self.cfg.keep_checkpoints,
                              self.desc)

    def _resume(self) -> None:
        path = ckpt.latest_checkpoint(self.checkpoint_dir)
        if path is None:
            return
        if self.cfg.distributed == "fsdp":  # any world size: DCP reshards on load
            self._restore(fsdp.read_dcp_checkpoint(path, nn.ModuleDict(self.modules), self.optimizer))
            return
        weights, opt_tensors, state = ckpt.read_checkpoint(path)
        for name, module in self.modules.items():
            prefix = f"{name}/"
            own = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
            try:
                module.load_state_dict(own)
            except RuntimeError as exc:
                raise CheckpointError(f"checkpoint {path} does not match module '{name}': {str(exc).splitlines()[0]}") from None
        ckpt.optimizer_from_flat(self.optimizer, opt_tensors, state["optimizer"])
        if self.swa is not None:
            self.swa.average = {k[4:]: v for k, v in weights.items() if k.startswith("swa/")}
            self.swa.count = state.get("swa_count", 0)
        self._restore(state)

    def _restore(self, state: dict[str, Any]) -> None:
        """The non-tensor part of a checkpoint: data position, RNG states, method and batch-source state."""
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        ckpt.set_rng_state(state["rng"])
        self.objective.load_extra_state(state.get("objective", {}))
        self.batches.load_state(state.get("batches", {}))  # e.g. the on-policy schedule and replay buffer
        self._truncate_metrics()

    def _truncate_metrics(self) -> None:
        """Drop metric lines written after the checkpoint we resume from (they will be rewritten)."""
        if self.rank != 0 or not self.metrics_path.exists():
            return
        kept = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut by the crash
            if record.get("step", 0) <= self.step:
                kept.append(line)
        ckpt.atomic_write_text(self.metrics_path, "".join(k + "\n" for k in kept))
        self.history = [json.loads(k) for k in kept]


class SWA:
    """Stochastic weight averaging (Izmailov et al., "Averaging Weights Leads to Wider Optima and Better
    Generalization", 2018): an equal-weight running mean of the model's float weights, taken at the
    end of epochs; `apply` copies it into the model and recomputes batch-norm running statistics
    with one pass over `bn_inputs`. The average is part of every checkpoint."""

    def __init__(self, model: nn.Module, bn_inputs: Callable[[], Iterator[Any]] | None):
        self.model, self.bn_inputs = model, bn_inputs
        self.average: dict[str, Tensor] = {}
        self.count = 0

    def _averaged(self) -> dict[str, Tensor]:
        return {k: v for k, v in self.model.state_dict().items() if v.is_floating_point() and "running_" not in k}

    def update(self) -> None:
        self.count += 1
        for k, v in self._averaged().items():
            if k not in self.average:
                self.average[k] = v.detach().clone()
            else:
                self.average[k] += (v.detach() - self.average[k]) / self.count

    def apply(self) -> None:
        if not self.count:
            return
        self.model.load_state_dict(self.average, strict=False)
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules())
        if has_bn and self.bn_inputs is not None:
            torch.optim.swa_utils.update_bn(self.bn_inputs(), self.model)


def _check_protocol(obj: Any, protocol: type, what: str, defaults: str) -> None:
    if not isinstance(obj, protocol):
        raise TypeError(f"{what}: {type(obj).__name__} lacks {', '.join(missing_members(obj, protocol))} of "
                        f"{protocol.__module__}.{protocol.__name__} (subclass {defaults} for the defaults)")


def set_determinism(seed: int, threads: int | None = None) -> None:
    """Seed every RNG and ask torch for deterministic kernels (CPU results then repeat exactly)."""
    import random

    import numpy as np

    if threads:
        torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
