"""Classification runs: teacher stage(s) (optional), CE baseline (optional), the method; then a
summary table, summary.json and report.html.

Stages live in `<run>/<stage>/` (teacher, teacher-2, ..., student-ce, student-<method>) with their
checkpoints, metrics.jsonl, the exported `model.safetensors` + `model.json`, and `done.json` once
finished; `--resume` skips finished stages and continues the interrupted one from its last checkpoint
(the run folder and stage skipping are the shared `distill.tasks.skeleton.Run`).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.data.augment import AUGMENTATIONS
from distill.data.images import DATASETS, ImageSplits
from distill.data.stream import ArrayBatches, normalize
from distill.errors import ConfigError
from distill.eval import classification_metrics, count_parameters, cpu_latency, predict_logits
from distill.eval.probe import linear_probe_accuracy
from distill.eval.teacher_check import diagnostic_warnings, method_temperature, soft_target_diagnostics
from distill.methods.base import METHODS, MethodConfig, build_method, method_names
from distill.methods.context import ClassificationContext
from distill.models import FrozenTeacher, create_model
from distill.models.io import export_model, load_weights
from distill.models.prune_blocks import init_from_teacher as cut_from_teacher
from distill.models.preprocess import attach_preprocessing, input_transform
from distill.models.registry import check_model_args
from distill.models.teacher_sources import LiveLogits, StoredLogits, ViewLogits
from distill.modes import eval_mode
from distill.tasks.classification.data import load_data, load_logits, open_store
from distill.tasks.classification.schema import ClassificationRecipe, ModelSpec, StudentSpec, TeacherSpec
from distill.tasks.classification.table import table
from distill.tasks.skeleton import Run, baseline_method, check_method
from distill.train.config import TrainConfig
from distill.train.core import Trainer, set_determinism


def check(cfg: ClassificationRecipe) -> None:
    """Load-time checks beyond types: names exist, options fit, the teachers are specified."""
    if cfg.data.hf is None:
        DATASETS.get(cfg.data.name, field="data.name")
    for field, name in (("data.augment", cfg.data.augment), *[("teacher.augment", t.augment) for t in teachers_of(cfg)]):
        if name not in (None, "default"):
            AUGMENTATIONS.get(name, field=field)
    check_model_args(cfg.student.name, cfg.student.kwargs, "student")
    check_method(cfg.method, "classification", teacher=cfg.teacher is not None, store=cfg.store is not None)
    for i, spec in enumerate(teachers_of(cfg)):
        where = "teacher" if i == 0 else f"extra_teachers[{i - 1}]"
        check_model_args(spec.name, spec.kwargs, where)
        if spec.checkpoint is None and spec.train is None and not spec.random_init:
            raise ConfigError(f"{where}: give a checkpoint to load, a train section to train it first, or random_init: true")
        check_preprocessing(spec, where)
    if cfg.store is not None and cfg.teacher is None and cfg.data.augment != "none":
        raise ConfigError("stored teacher logits are of the unaugmented images: set data.augment: none "
                          "(or train with the live teacher)")
    if cfg.student.init_from_teacher is not None and (
            cfg.teacher is None or (cfg.teacher.name, cfg.teacher.kwargs) != (cfg.student.name, cfg.student.kwargs)):
        raise ConfigError("student.init_from_teacher needs a teacher of the same architecture as the student "
                          "(same name and kwargs)")
    if cfg.student.init is not None and (cfg.teacher is None or cfg.student.init_from_teacher is not None):
        raise ConfigError("student.init.from_teacher needs a teacher section and excludes student.init_from_teacher")


def check_preprocessing(spec: TeacherSpec, where: str) -> None:
    if spec.normalize == "given" and (spec.mean is None or spec.std is None or len(spec.mean) != len(spec.std)):
        raise ConfigError(f"{where}.normalize: given needs {where}.mean and {where}.std, one value per channel")
    if spec.normalize != "given" and (spec.mean is not None or spec.std is not None):
        raise ConfigError(f"{where}.mean/std are read only with {where}.normalize: given")
    if spec.train is not None and (spec.normalize != "dataset" or spec.input_size is not None):
        raise ConfigError(f"{where}.normalize / input_size describe a loaded teacher; a teacher trained here "
                          "sees the dataset's normalised inputs")
    if any(s <= 0 for s in spec.std or []):
        raise ConfigError(f"{where}.std: every value must be > 0 (got {spec.std})")


def preprocessing_of(spec: TeacherSpec, data: ImageSplits) -> Any:
    """The forward pre-hook transform from the dataset's normalised inputs to what `spec`'s model expects."""
    channels = data.train_x.shape[1]
    if spec.mean is not None and len(spec.mean) != channels:
        raise ConfigError(f"teacher.mean has {len(spec.mean)} values; the images have {channels} channels")
    return input_transform(data.mean, data.std, spec.normalize, spec.mean, spec.std, spec.input_size)


def teachers_of(cfg: ClassificationRecipe) -> list[TeacherSpec]:
    return ([cfg.teacher] if cfg.teacher is not None else []) + list(cfg.extra_teachers)


# ----------------------------------------------------------------------------- models

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
    with eval_mode(model), torch.no_grad():
        out = model(normalize(data.train_x[:2], data.mean, data.std))
    if out.dim() != 2 or out.shape[1] != data.num_classes:
        raise ConfigError(f"{role} outputs {tuple(out.shape[1:])} logits per example but the dataset has "
                          f"{data.num_classes} classes")


def model_card(spec: ModelSpec, data: ImageSplits) -> dict[str, Any]:
    return {"name": spec.name, "kwargs": spec.kwargs, "num_classes": data.num_classes,
            "in_channels": data.in_channels, "image_size": data.image_size, "classes": data.classes,
            "mean": data.mean, "std": data.std}


# augmentations with finitely many views, each a function of (N, C, H, W) images (uint8 or normalised):
# the teacher's logits of every view are computed once and looked up (teacher.logits: auto)
FINITE_VIEWS = {"none": [lambda x: x], "flip": [lambda x: x, lambda x: x.flip(-1)]}


# ----------------------------------------------------------------------------- stages

class Stage:
    """One training stage: a model trained by a method and exported; skipped on --resume once finished."""

    def __init__(self, run: "ClassificationRun", name: str, spec: ModelSpec, method_cfg: MethodConfig,
                 train_cfg: TrainConfig, seed: int, augment: str | None = None):
        self.run, self.name, self.spec = run, name, spec
        self.method_cfg, self.train_cfg, self.seed, self.augment = method_cfg, train_cfg, seed, augment
        self.init_report: dict[str, Any] | None = None  # what student.init.from_teacher kept
        self.init_accuracy: float | None = None  # test accuracy right after that cut

    def build(self, teacher: nn.Module | None) -> nn.Module:
        role = "teacher" if self.name.startswith("teacher") else "student"
        model = build_model(self.spec, self.run.data, self.seed, role)
        eps = self.spec.init_from_teacher if isinstance(self.spec, StudentSpec) else None
        inner = teacher.model if isinstance(teacher, FrozenTeacher) else teacher
        if eps is not None and teacher is not None:
            init_near(model, inner, eps)
        if isinstance(self.spec, StudentSpec) and self.spec.init is not None and teacher is not None:
            spec = self.spec.init.from_teacher
            d = self.run.data
            images = normalize(d.train_x[:spec.calibration_images], d.mean, d.std)
            self.init_report = cut_from_teacher(model, inner, images, spec.select)
        return model

    def execute(self, teacher: nn.Module | None) -> tuple[nn.Module, dict[str, Any]]:
        model = self.build(teacher)

        def reuse(folder: Path, _result: dict[str, Any]) -> None:
            load_weights(model, folder, what=self.name, arch=self.spec.name)
        result = self.run.folder.stage(self.name, lambda folder: self._train(model, teacher, folder), reuse)
        return model, result

    def _train(self, model: nn.Module, teacher: nn.Module | None, folder: Path) -> dict[str, Any]:
        self.init_accuracy = self.run.evaluate(model)["accuracy"] if self.init_report is not None else None
        batches = self.run.batches(self.train_cfg.batch_size, self.augment)
        reuse = self.run.reused_views(self.method_cfg, self.augment) if teacher is not None else None
        context = self.run.context(batches, self.train_cfg, teacher, reuse)
        method = build_method(self.method_cfg, student=model, teacher=teacher, context=context)
        frozen = tuple(t for t in [teacher, *self.run.extra_teachers] if t is not None)
        trainer = Trainer(stage_dir=folder, modules={"student": model, "method": method}, objective=method,
                          batches=batches, cfg=self.train_cfg, evaluate=lambda: self.run.evaluate(model),
                          frozen=frozen, progress=self.run.cfg.progress, desc=self.name,
                          swa_bn_inputs=lambda: (b["x"] for b in self.run.plain_batches()))
        started = time.perf_counter()
        last_eval = trainer.fit(resume=self.run.folder.resume)
        method.close()
        export_model(model, folder, model_card(self.spec, self.run.data))
        result = self.run.final_metrics(model, self.spec.name, folder, last_eval)
        result["train_seconds"] = time.perf_counter() - started  # this session's share when resumed
        if self.init_report is not None:
            result["init"] = {**self.init_report, "init_accuracy": self.init_accuracy}
        if teacher is not None or self.run.stored_train_logits is not None:
            result["teacher_logits"] = "reused" if reuse else "live" if teacher is not None else "store"
            if reuse and reuse != "none":
                result["teacher_logits_views"] = len(FINITE_VIEWS[reuse])
        return result


class ClassificationRun:
    """Holds what every stage shares: config, data, held-out split, teachers, teacher test logits."""

    def __init__(self, cfg: ClassificationRecipe, folder: Run):
        self.cfg, self.folder, self.run_dir = cfg, folder, folder.path
        self.data, self.held_out = load_data(cfg)
        self.teacher_test_logits: torch.Tensor | None = None
        self.warnings: list[str] = []  # teacher diagnostics (distill.eval.teacher_check)
        self.stored_train_logits: torch.Tensor | None = None
        self.reused_train_logits: dict[str, list[torch.Tensor]] = {}  # augmentation -> per view (teacher.logits: auto)
        self.extra_teachers: list[FrozenTeacher] = []

    def augment_name(self, name: str | None) -> str:
        name = name or self.cfg.data.augment
        return self.data.default_augment if name == "default" else name

    def augmentation(self, name: str | None) -> Any:
        return AUGMENTATIONS.get(self.augment_name(name), field="data.augment").obj

    def batches(self, batch_size: int, augment: str | None = None) -> ArrayBatches:
        return ArrayBatches(self.data.train_x, self.data.train_y, batch_size=batch_size, mean=self.data.mean,
                            std=self.data.std, seed=self.cfg.seed, augment=self.augmentation(augment))

    def use_store(self) -> None:
        """Read teacher logits from the store (verified against this recipe's data) instead of a teacher."""
        reader = open_store(self.cfg)
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

    def reused_views(self, method_cfg: MethodConfig, augment: str | None) -> str | None:
        """The augmentation whose views' teacher logits a stage can look up instead of running the teacher
        on every batch (None: it cannot): the inputs must be the training images or one of a finite set of
        their views (FINITE_VIEWS), and the method must need only the teacher's logits (no features, no
        teacher forwards of its own)."""
        cls, name = METHODS.get(method_cfg.name).obj, self.augment_name(augment)
        usable = (self.cfg.teacher is not None and self.cfg.teacher.logits == "auto" and cls.needs_teacher
                  and not cls.needs_live_teacher and name in FINITE_VIEWS)
        return name if usable else None

    def plain_inputs(self, index: torch.Tensor) -> torch.Tensor:
        return normalize(self.data.train_x[index], self.data.mean, self.data.std)

    def teacher_train_logits(self, teacher: nn.Module, augment: str) -> list[torch.Tensor]:
        """The teacher's logits on every view of the training images, computed once per run, with the
        forward `distill cache` uses (so training from the plain view equals training from a store)."""
        if augment not in self.reused_train_logits:
            started, views = time.perf_counter(), FINITE_VIEWS[augment]
            with torch.no_grad():
                self.reused_train_logits[augment] = [
                    predict_logits(teacher, view(self.data.train_x), self.data.mean, self.data.std,
                                   self.cfg.eval.batch_size) for view in views]
            print(f"teacher logits of {len(self.data.train_y)} training images x {len(views)} view(s) computed once "
                  f"and reused ({time.perf_counter() - started:.1f} s; teacher.logits: live runs it on every batch)",
                  flush=True)
        return self.reused_train_logits[augment]

    def teacher_source(self, teacher: nn.Module | None, reuse: str | None = None) -> Any:
        """The teacher's training logits: the live teacher, its logits computed once (`reuse`: the
        augmentation whose views they are of), or the store's table."""
        if teacher is not None and reuse is None:
            return LiveLogits(teacher)
        if teacher is not None:
            tables = self.teacher_train_logits(teacher, reuse)
            return StoredLogits(tables[0]) if len(tables) == 1 else ViewLogits(tables, FINITE_VIEWS[reuse], self.plain_inputs)
        return StoredLogits(self.stored_train_logits) if self.stored_train_logits is not None else None

    def context(self, batches: ArrayBatches, train_cfg: TrainConfig, teacher: nn.Module | None,
                reuse: str | None = None) -> ClassificationContext:
        return ClassificationContext(
            num_classes=self.data.num_classes, num_train=len(self.data.train_y), steps_per_epoch=len(batches),
            epochs=train_cfg.epochs, label_smoothing=train_cfg.label_smoothing,
            teacher_logits=self.teacher_source(teacher, reuse),
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


def teacher_stage(run: ClassificationRun, spec: TeacherSpec, name: str, seed: int) -> tuple[nn.Module, dict[str, Any]]:
    """Train, load or randomly initialise one teacher; export it to <run>/<name>/."""
    if spec.train is None:
        model = build_model(spec, run.data, seed, "teacher")
        attach_preprocessing(model, preprocessing_of(spec, run.data))  # a hook: the exported weights are unchanged
        folder = run.run_dir / name
        export_model(model, folder, model_card(spec, run.data))
        return model, run.final_metrics(model, spec.name, folder)
    method = spec.method or baseline_method("classification")
    if METHODS.get(method.name).obj.needs_teacher:
        raise ConfigError(f"teacher.method = {method.name!r} needs a teacher itself; use a label-only objective: "
                          f"{', '.join(method_names('classification', needs_teacher=False))}")
    return Stage(run, name, spec, method, spec.train, seed, spec.augment).execute(None)


def prepare_teachers(ctx: ClassificationRun, results: dict[str, dict[str, Any]]) -> FrozenTeacher | None:
    """Every teacher stage (trained, loaded or random), frozen; or the store's logits when there is no teacher."""
    frozen = []
    for i, spec in enumerate(teachers_of(ctx.cfg)):
        name = "teacher" if i == 0 else f"teacher-{i + 1}"
        model, results[name] = teacher_stage(ctx, spec, name, ctx.cfg.seed + 100 * i)
        frozen.append(FrozenTeacher(model))
    teacher = frozen[0] if frozen else None
    ctx.extra_teachers = frozen[1:]
    if teacher is not None:
        ctx.teacher_test_logits = ctx.logits(teacher)
    elif ctx.cfg.store is not None:
        ctx.use_store()
    if ctx.teacher_test_logits is not None:
        check_teacher_signal(ctx, results)
    return teacher


def check_teacher_signal(ctx: ClassificationRun, results: dict[str, dict[str, Any]]) -> None:
    """Diagnostics of the teacher's held-out logits at the method's temperature, with one-line warnings
    (printed, and kept in the summary for the report) before any student trains."""
    figures = soft_target_diagnostics(ctx.teacher_test_logits, ctx.data.test_y, method_temperature(ctx.cfg.method),
                                      ctx.cfg.eval.ece_bins)
    ctx.warnings = diagnostic_warnings(figures)
    if "teacher" in results:
        results["teacher"]["diagnostics"] = figures
    for line in ctx.warnings:
        print(f"warning: {line}", flush=True)


def run(cfg: ClassificationRecipe, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Run every stage of a classification recipe; returns the summary (also in summary.json)."""
    set_determinism(cfg.seed, cfg.threads)
    ctx = ClassificationRun(cfg, Run(cfg, resume=resume, overwrite=overwrite))
    check_classes(build_model(cfg.student, ctx.data, cfg.seed, "student"), ctx.data, "student")
    results: dict[str, dict[str, Any]] = {}
    teacher = prepare_teachers(ctx, results)
    student_seed = cfg.seed + 1  # the baseline and the method student start from the same init
    if cfg.baseline and not METHODS.get(cfg.method.name).obj.baseline:
        base = baseline_method("classification")
        name = f"student-{base.name}"
        _, results[name] = Stage(ctx, name, cfg.student, base, cfg.train, student_seed).execute(teacher)
    name = f"student-{cfg.method.name}"
    _, results[name] = Stage(ctx, name, cfg.student, cfg.method, cfg.train, student_seed).execute(teacher)
    return ctx.folder.write_summary("classification", results, table, dataset=cfg.data.label(), warnings=ctx.warnings)
