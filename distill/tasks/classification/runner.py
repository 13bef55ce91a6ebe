"""Classification runs: teacher stage(s) (optional), CE baseline (optional), the method; then a
summary table, summary.json and report.html.

Stages live in `<run>/<stage>/` (teacher, teacher-2, ..., student-ce, student-<method>) with their
checkpoints, metrics.jsonl, the exported `model.safetensors` + `model.json`, and `done.json` once
finished; `--resume` skips finished stages and continues the interrupted one from its last checkpoint.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.config import to_dict
from distill.data.augment import AUGMENTATIONS
from distill.data.images import DATASETS, ImageSplits
from distill.data.stream import ArrayBatches, normalize
from distill.data.subset import subset_indices
from distill.errors import ConfigError, DataError
from distill.eval import classification_metrics, count_parameters, cpu_latency, predict_logits
from distill.eval.probe import linear_probe_accuracy
from distill.methods.base import METHODS, MethodConfig, TaskInfo, build_method
from distill.models import FrozenTeacher, create_model
from distill.models.io import export_model, load_weights
from distill.models.registry import check_model_args
from distill.tasks.classification.schema import ClassificationRecipe, ModelSpec, TeacherSpec
from distill.train.checkpoint import atomic_write_text
from distill.train.config import TrainConfig
from distill.train.core import Trainer, set_determinism
from distill.train.rundir import mark_stage_done, open_run_dir, stage_done


def check(cfg: ClassificationRecipe) -> None:
    """Load-time checks beyond types: names exist, options fit, the teachers are specified."""
    DATASETS.get(cfg.data.name, field="data.name")
    for field, name in (("data.augment", cfg.data.augment), *[("teacher.augment", t.augment) for t in teachers_of(cfg)]):
        if name not in (None, "default"):
            AUGMENTATIONS.get(name, field=field)
    check_model_args(cfg.student.name, cfg.student.kwargs, "student")
    method_cls = METHODS.get(cfg.method.name, field="method.name").obj
    if method_cls.task != "classification":
        raise ConfigError(f"method.name = {cfg.method.name!r} is a {method_cls.task} method; this is a classification recipe")
    for i, spec in enumerate(teachers_of(cfg)):
        where = "teacher" if i == 0 else f"extra_teachers[{i - 1}]"
        check_model_args(spec.name, spec.kwargs, where)
        if spec.checkpoint is None and spec.train is None and not spec.random_init:
            raise ConfigError(f"{where}: give a checkpoint to load, a train section to train it first, or random_init: true")
    if cfg.teacher is None and cfg.store is None and method_cls.needs_teacher:
        raise ConfigError(f"method.name = {cfg.method.name!r} needs a teacher: add a teacher section")
    if cfg.store is not None and cfg.teacher is None:
        if method_cls.needs_live_teacher:
            raise ConfigError(f"method.name = {cfg.method.name!r} needs the live teacher (features or new inputs); "
                              "a store holds logits only: use kd, ls_kd, dkd, pld, dist, dhkd or sinkd")
        if cfg.data.augment != "none":
            raise ConfigError("stored teacher logits are of the unaugmented images: set data.augment: none "
                              "(or train with the live teacher)")
    if cfg.student.init_from_teacher is not None and (
            cfg.teacher is None or (cfg.teacher.name, cfg.teacher.kwargs) != (cfg.student.name, cfg.student.kwargs)):
        raise ConfigError("student.init_from_teacher needs a teacher of the same architecture as the student "
                          "(same name and kwargs)")


def teachers_of(cfg: ClassificationRecipe) -> list[TeacherSpec]:
    return ([cfg.teacher] if cfg.teacher is not None else []) + list(cfg.extra_teachers)


# ----------------------------------------------------------------------------- data and models

def load_data(cfg: ClassificationRecipe) -> tuple[ImageSplits, ImageSplits | None]:
    """(data, held-out split or None): the held-out part is removed from data's training split."""
    builder = DATASETS.get(cfg.data.name, field="data.name").obj
    try:
        data = builder(cfg.data.root, **cfg.data.options)
    except TypeError as exc:
        raise ConfigError(f"data.options: {exc}") from None
    if cfg.data.train_subset:
        keep = subset_indices(len(data.train_y), cfg.data.train_subset)
        data.train_x, data.train_y = data.train_x[keep], data.train_y[keep]
    if cfg.data.test_subset:
        keep = subset_indices(len(data.test_y), cfg.data.test_subset)
        data.test_x, data.test_y = data.test_x[keep], data.test_y[keep]
    if len(data.train_y) == 0 or len(data.test_y) == 0:
        raise DataError(f"dataset {cfg.data.name!r} has an empty train or test split")
    if not cfg.data.hold_out:
        return data, None
    split = data.hold_out(cfg.data.hold_out, seed=0)  # train -> (train part, held-out part)
    held = ImageSplits(split.test_x, split.test_y, data.test_x, data.test_y, data.classes, data.default_augment,
                       data.name, data.mean, data.std)
    data.train_x, data.train_y = split.train_x, split.train_y
    return data, held


def build_model(spec: ModelSpec, data: ImageSplits, seed: int, role: str) -> nn.Module:
    torch.manual_seed(seed)
    try:
        model = create_model(spec.name, spec.kwargs, num_classes=data.num_classes, in_channels=data.in_channels,
                             image_size=data.image_size)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{role}.kwargs: cannot build {spec.name!r}: {exc}") from None
    if spec.checkpoint:
        load_weights(model, spec.checkpoint, what=role, arch=spec.name)
    check_classes(model, data, role)
    return model


def init_near(student: nn.Module, teacher: nn.Module, eps: float) -> None:
    """student <- (teacher + eps * student_random) / sqrt(1 + eps^2), float tensors only (buffers copied)."""
    teacher_state = teacher.state_dict()
    with torch.no_grad():
        for name, value in student.state_dict().items():
            source = teacher_state[name]
            if value.is_floating_point() and "running" not in name:
                value.copy_((source + eps * value) / math.sqrt(1 + eps * eps))
            else:
                value.copy_(source)


def check_classes(model: nn.Module, data: ImageSplits, role: str) -> None:
    """The model must output one logit per dataset class."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(normalize(data.train_x[:2], data.mean, data.std))
    model.train(was_training)
    if out.dim() != 2 or out.shape[1] != data.num_classes:
        raise ConfigError(f"{role} outputs {tuple(out.shape[1:])} logits per example but the dataset has "
                          f"{data.num_classes} classes")


def model_card(spec: ModelSpec, data: ImageSplits) -> dict[str, Any]:
    return {"name": spec.name, "kwargs": spec.kwargs, "num_classes": data.num_classes,
            "in_channels": data.in_channels, "image_size": data.image_size, "classes": data.classes,
            "mean": data.mean, "std": data.std}


# ----------------------------------------------------------------------------- stages

class Stage:
    """One training stage: a model trained by a method, exported, and marked done."""

    def __init__(self, run: "ClassificationRun", name: str, spec: ModelSpec, method_cfg: MethodConfig,
                 train_cfg: TrainConfig, seed: int, augment: str | None = None):
        self.run, self.name, self.spec = run, name, spec
        self.method_cfg, self.train_cfg, self.seed, self.augment = method_cfg, train_cfg, seed, augment
        self.dir = run.run_dir / name

    def build(self, teacher: nn.Module | None) -> nn.Module:
        role = "teacher" if self.name.startswith("teacher") else "student"
        model = build_model(self.spec, self.run.data, self.seed, role)
        eps = getattr(self.spec, "init_from_teacher", None)
        if eps is not None and teacher is not None:
            init_near(model, teacher.model if isinstance(teacher, FrozenTeacher) else teacher, eps)
        return model

    def execute(self, teacher: nn.Module | None, resume: bool) -> tuple[nn.Module, dict[str, Any]]:
        model = self.build(teacher)
        done = stage_done(self.dir) if resume else None
        if done is not None:
            load_weights(model, self.dir, what=self.name, arch=self.spec.name)
            return model, done
        batches = self.run.batches(self.train_cfg.batch_size, self.augment)
        method = build_method(self.method_cfg, student=model, teacher=teacher, info=self.run.task_info(batches, self.train_cfg))
        frozen = tuple(t for t in [teacher, *self.run.extra_teachers] if t is not None)
        trainer = Trainer(stage_dir=self.dir, modules={"student": model, "method": method}, objective=method,
                          batches=batches, cfg=self.train_cfg, evaluate=lambda: self.run.evaluate(model),
                          frozen=frozen, progress=self.run.cfg.progress, desc=self.name,
                          swa_bn_inputs=lambda: (b["x"] for b in self.run.plain_batches()))
        started = time.perf_counter()
        last_eval = trainer.fit(resume=resume)
        method.close()
        export_model(model, self.dir, model_card(self.spec, self.run.data))
        result = self.run.final_metrics(model, self.spec.name, self.dir, last_eval)
        result["train_seconds"] = time.perf_counter() - started  # this session's share when resumed
        mark_stage_done(self.dir, result)
        return model, result


class StoredLogitBatches:
    """A batch stream that adds the stored teacher logits of each batch's samples ("teacher_logits")."""

    def __init__(self, stream: ArrayBatches, logits: torch.Tensor):
        self.stream, self.logits = stream, logits

    def __len__(self) -> int:
        return len(self.stream)

    def epoch(self, epoch: int, start: int = 0):
        for batch in self.stream.epoch(epoch, start):
            batch["teacher_logits"] = self.logits[batch["index"]]
            yield batch


class ClassificationRun:
    """Holds what every stage shares: config, data, held-out split, teachers, teacher test logits."""

    def __init__(self, cfg: ClassificationRecipe, run_dir: Path):
        self.cfg, self.run_dir = cfg, run_dir
        self.data, self.held_out = load_data(cfg)
        self.teacher_test_logits: torch.Tensor | None = None
        self.stored_train_logits: torch.Tensor | None = None
        self.extra_teachers: list[FrozenTeacher] = []

    def augmentation(self, name: str | None) -> Any:
        name = name or self.cfg.data.augment
        name = self.data.default_augment if name == "default" else name
        return AUGMENTATIONS.get(name, field="data.augment").obj

    def batches(self, batch_size: int, augment: str | None = None) -> ArrayBatches:
        stream = ArrayBatches(self.data.train_x, self.data.train_y, batch_size=batch_size, mean=self.data.mean,
                              std=self.data.std, seed=self.cfg.seed, augment=self.augmentation(augment))
        return StoredLogitBatches(stream, self.stored_train_logits) if self.stored_train_logits is not None else stream

    def use_store(self) -> None:
        """Read teacher logits from the store (verified against this recipe's data) instead of a teacher."""
        from distill.data.store import StoreReader
        from distill.tasks.classification.cache import dataset_fingerprint, load_logits
        reader = StoreReader(self.cfg.store.path, expect={"kind": "classification",
                                                          "dataset_fingerprint": dataset_fingerprint(self.cfg)})
        self.stored_train_logits = load_logits(reader, "train")
        self.teacher_test_logits = load_logits(reader, "test")

    def plain_batches(self, batch_size: int = 256):
        """Unaugmented, unshuffled training batches (with their indices)."""
        stream = ArrayBatches(self.data.train_x, self.data.train_y, batch_size=batch_size, mean=self.data.mean,
                              std=self.data.std, shuffle=False)
        return stream.epoch(0)

    def held_out_stream(self, batch_size: int):
        if self.held_out is None:
            return None
        stream = ArrayBatches(self.held_out.train_x, self.held_out.train_y, batch_size=batch_size,
                              mean=self.data.mean, std=self.data.std, seed=self.cfg.seed + 7919)
        return stream.epoch

    def task_info(self, batches: ArrayBatches, train_cfg: TrainConfig) -> TaskInfo:
        return TaskInfo(num_classes=self.data.num_classes, num_train=len(self.data.train_y),
                        steps_per_epoch=len(batches), epochs=train_cfg.epochs, label_smoothing=train_cfg.label_smoothing,
                        example_input=normalize(self.data.train_x[:2], self.data.mean, self.data.std),
                        train_labels=self.data.train_y, plain_train_batches=self.plain_batches,
                        held_out_batches=self.held_out_stream(train_cfg.batch_size), extra_teachers=self.extra_teachers)

    def logits(self, model: nn.Module) -> torch.Tensor:
        return predict_logits(model, self.data.test_x, self.data.mean, self.data.std, self.cfg.eval.batch_size)

    def evaluate(self, model: nn.Module) -> dict[str, Any]:
        return classification_metrics(self.logits(model), self.data.test_y, self.teacher_test_logits,
                                      self.cfg.eval.ece_bins)

    def final_metrics(self, model: nn.Module, arch: str, folder: Path, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
        """Test metrics (reusing the trainer's final evaluation when given), size, latency, probe."""
        metrics = dict(metrics) if metrics and "reliability" in metrics else self.evaluate(model)
        example = normalize(self.data.test_x[:1], self.data.mean, self.data.std)
        metrics.update(arch=arch, params=count_parameters(model), size_bytes=(folder / "model.safetensors").stat().st_size,
                       latency_ms=1000 * cpu_latency(model, example, self.cfg.eval.latency_runs))
        if self.cfg.eval.linear_probe:
            d = self.data
            metrics["probe_accuracy"] = linear_probe_accuracy(model, d.train_x, d.train_y, d.test_x, d.test_y, d.mean,
                                                              d.std, self.cfg.eval.probe_train_samples)
        return metrics


def teacher_stage(run: ClassificationRun, spec: TeacherSpec, name: str, seed: int, resume: bool) -> tuple[nn.Module, dict[str, Any]]:
    """Train, load or randomly initialise one teacher; export it to <run>/<name>/."""
    if spec.train is None:
        model = build_model(spec, run.data, seed, "teacher")
        folder = run.run_dir / name
        export_model(model, folder, model_card(spec, run.data))
        return model, run.final_metrics(model, spec.name, folder)
    method = spec.method or METHODS.get("ce").config(name="ce")
    if METHODS.get(method.name).obj.needs_teacher:
        raise ConfigError(f"teacher.method = {method.name!r} needs a teacher itself; use ce, focal or another "
                          "label-only objective")
    return Stage(run, name, spec, method, spec.train, seed, spec.augment).execute(None, resume)


def run(cfg: ClassificationRecipe, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Run every stage of a classification recipe; returns the summary (also in summary.json)."""
    set_determinism(cfg.seed, cfg.threads)
    run_dir = open_run_dir(cfg, resume=resume, overwrite=overwrite)
    ctx = ClassificationRun(cfg, run_dir)
    check_classes(build_model(cfg.student, ctx.data, cfg.seed, "student"), ctx.data, "student")
    results: dict[str, dict[str, Any]] = {}
    frozen = []
    for i, spec in enumerate(teachers_of(cfg)):
        name = "teacher" if i == 0 else f"teacher-{i + 1}"
        model, results[name] = teacher_stage(ctx, spec, name, cfg.seed + 100 * i, resume)
        frozen.append(FrozenTeacher(model))
    teacher = frozen[0] if frozen else None
    ctx.extra_teachers = frozen[1:]
    if teacher is not None:
        ctx.teacher_test_logits = ctx.logits(teacher)
    elif cfg.store is not None:
        ctx.use_store()
    student_seed = cfg.seed + 1  # the CE baseline and the method student start from the same init
    if cfg.baseline and cfg.method.name != "ce":
        ce = METHODS.get("ce").config(name="ce")
        _, results["student-ce"] = Stage(ctx, "student-ce", cfg.student, ce, cfg.train, student_seed).execute(teacher, resume)
    stage = f"student-{cfg.method.name}"
    _, results[stage] = Stage(ctx, stage, cfg.student, cfg.method, cfg.train, student_seed).execute(teacher, resume)
    return write_summary(cfg, run_dir, results)


def write_summary(cfg: ClassificationRecipe, run_dir: Path, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    summary = {"name": cfg.name, "task": "classification", "dataset": cfg.data.name, "method": cfg.method.name,
               "config": to_dict(cfg), "stages": results}
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return summary

