"""What a method is: a config dataclass plus a module that turns a batch into named loss parts.

A method file defines `XConfig(MethodConfig)` and `class X(Method)`, decorated with
`@METHODS.register("x", config=XConfig)`. It is discovered automatically: nothing central changes.
The loops call `method(batch)` and train on the returned "loss"; every other entry is logged.
A method's own parameters (adapters, projectors, auxiliary heads) are trained with the student
but never exported with it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill.config import option
from distill.methods.context import ClassificationContext, TaskContext
from distill.models.hooks import FeatureTaps
from distill.models.teacher import FrozenTeacher
from distill.modes import eval_mode
from distill.registry import Registry
from distill.train.protocols import ObjectiveHooks

METHODS = Registry("method", discover="distill.methods")


@dataclass(kw_only=True)
class MethodConfig:
    """Fields every method has."""

    name: str = option(help="registered method name (see `distill methods`)")


class Method(ObjectiveHooks, nn.Module):
    """Base class. Subclasses implement `forward(batch) -> {"loss": ..., "<part>": ...}`.

    The student and teacher are held by reference (not as submodules), so `method.parameters()`
    are only the method's own trainable pieces and the teacher never reaches an optimizer.

    Class attributes (the tasks' compatibility checks and messages are generated from them):
        task: the task whose batches the method understands.
        needs_teacher: False for label-only objectives (CE, focal, online peers).
        needs_live_teacher: True when a teacher-signal store cannot replace the teacher (features,
            re-run on new inputs, several teachers).
        requires_on_policy: True when the loss is only meaningful on the student's own samples.
        baseline: True for the task's label-only reference (CE): the `baseline: true` stage and the
            default teacher-training objective.
        cross_tokenizer: True when the method reads a teacher of another tokenizer (aligned spans).
    The Trainer's hooks (`count`, `on_epoch_start`, `on_step_end`, `extra_state`,
    `load_extra_state`) are defaulted (`distill.train.protocols.ObjectiveHooks`); override what you need.
    """

    task: str = "classification"
    needs_teacher: bool = True
    needs_live_teacher: bool = False
    requires_on_policy: bool = False
    baseline: bool = False
    cross_tokenizer: bool = False

    def __init__(self, cfg: MethodConfig, *, student: nn.Module, teacher: nn.Module | None, context: TaskContext):
        super().__init__()
        self.cfg, self.ctx = cfg, context
        self._models = {"student": student, "teacher": teacher}  # a dict: not registered as submodules
        self._taps: list[FeatureTaps] = []
        self.epoch = 0

    @property
    def student(self) -> nn.Module:
        return self._models["student"]

    @property
    def teacher(self) -> nn.Module | None:
        return self._models["teacher"]

    def on_epoch_start(self, epoch: int) -> None:
        """Called by the loop before each epoch (schedules such as warm-ups use it)."""
        self.epoch = epoch

    def close(self) -> None:
        """Release hooks and other resources once the stage is over (feature methods remove their taps)."""
        for taps in self._taps:
            taps.remove()

    def tap(self, model: nn.Module, paths: list[str]) -> FeatureTaps:
        """Forward hooks on `model` (the teacher's inner model for a FrozenTeacher), removed by `close`."""
        taps = FeatureTaps(model.model if isinstance(model, FrozenTeacher) else model, paths)
        self._taps.append(taps)
        return taps

    def logits_pair(self, batch: dict[str, Any] | Tensor) -> tuple[Tensor, Tensor]:
        """(student logits, teacher logits) for a batch (or an input tensor, which needs the live teacher).

        The teacher's logits for a batch come from the context's source (the live teacher, or a
        store lookup), first, on purpose: a live teacher's no-grad temporaries are freed before
        the student's activations (kept for backward) are allocated, so the allocator reuses that
        memory. In the other order the CPU step of a ResNet-56 -> ResNet-20 KD is ~20% slower
        (measured, see benchmarks/cls_step_speed.py).
        """
        if not isinstance(batch, dict):
            teacher_logits = self.teacher(batch)
            return self.student(batch), teacher_logits
        teacher_logits = self.ctx.teacher_logits.logits(batch)
        return self.student(batch["x"]), teacher_logits

    def probe(self, model: nn.Module, taps: FeatureTaps) -> dict[str, Tensor]:
        """Shapes for building adapters: one eval-mode, no-grad forward of `ctx.example_input`.

        Eval mode so the probe never moves batch-norm statistics.
        """
        with eval_mode(model), torch.no_grad():
            model(self.ctx.example_input)
        return dict(taps.features)

    def cross_entropy(self, logits: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), targets, label_smoothing=self.ctx.label_smoothing)


def build_method(cfg: MethodConfig, *, student: nn.Module, teacher: nn.Module | None, context: TaskContext) -> Method:
    cls = METHODS.get(cfg.name, field="method.name").obj
    return cls(cfg, student=student, teacher=teacher, context=context)


def method_names(task: str, **attributes: Any) -> list[str]:
    """Registered methods of `task` whose class attributes equal `attributes` (for checks and messages)."""
    return [e.name for e in METHODS.entries()
            if e.obj.task == task and all(getattr(e.obj, k) == v for k, v in attributes.items())]


__all__ = ["METHODS", "ClassificationContext", "Method", "MethodConfig", "build_method", "method_names"]
