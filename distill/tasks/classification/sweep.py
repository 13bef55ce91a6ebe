"""`distill sweep` for classification: the teacher is trained once, its logits stored once, for all trials.

    <sweep>/teacher/   a run folder holding the teacher stage (trained once; `distill cache` reuses it)
    <sweep>/store/     the teacher's logits of the (unaugmented) training and validation images

Every trial then reads the store instead of a teacher (`teacher_logits: store` in its summary). When a
store cannot serve the trials (augmented inputs, a method that needs the live teacher, several
teachers, `teacher.logits: live`), the teachers are still trained once and each trial loads them from
that folder. Trials are scored on `sweep.validation` of the training split (`data.validation`), and the
teacher is trained without those images too.
"""
from __future__ import annotations

from pathlib import Path

from distill.config import apply_overrides, from_dict, to_dict
from distill.methods.base import METHODS
from distill.tasks.classification.cache import TEACHER_KEYS, cache
from distill.tasks.classification.data import load_data
from distill.tasks.classification.runner import ClassificationRun, check, teacher_stage, teachers_of
from distill.tasks.classification.schema import ClassificationRecipe
from distill.tasks.skeleton import Run
from distill.tasks.sweep import override
from distill.train.core import set_determinism


def prepare_sweep(cfg: ClassificationRecipe, folder: Path) -> list[str]:
    """Train (or load) the teachers once under `folder` and store their logits when a store can serve
    the trials; the overrides that make a trial use them and score on the validation split."""
    base = ["baseline=false"]  # the CE baseline does not depend on the searched method options
    validation = cfg.sweep.validation if cfg.sweep is not None else 0.0
    if validation and cfg.teacher is None and cfg.store is not None:
        print(f"note: the store {cfg.store.path} holds logits of the whole training split, so trials are scored "
              "on the test split (optimistic for the best trial); give the recipe its teacher to hold out a "
              "validation split", flush=True)
    elif validation:
        base.append(override("data.validation", validation))
    if cfg.teacher is None:
        return base
    shared = variant(cfg, base + [override("output_dir", str(folder)), "name=teacher"])
    refusal = store_refusal(shared)
    if refusal is None:
        store = folder / "store"
        # the plain images' logits: data.augment none is what the data already was (the fingerprint names it)
        manifest = cache(variant(shared, ["data.augment=none", override("store.path", str(store))]))
        images = sum(s["examples"] for v in manifest["splits"].values() for s in v)
        print(f"teacher ready in {folder / 'teacher' / 'teacher'}; its logits of {images} images stored once in "
              f"{store}, read by every trial", flush=True)
        return base + ["teacher=null", "extra_teachers=[]", override("store.path", str(store)), "data.augment=none"]
    return base + trained_teachers(shared, refusal)


def store_refusal(cfg: ClassificationRecipe) -> str | None:
    """Why the teacher's logits of the plain training images cannot replace the teacher in the trials (None: they can)."""
    if METHODS.get(cfg.method.name).obj.needs_live_teacher:
        return f"method {cfg.method.name} needs the live teacher"
    if cfg.extra_teachers:
        return "several teachers"
    if cfg.teacher.logits == "live":
        return "teacher.logits: live"
    name = cfg.data.augment
    if name == "default":  # the dataset's own default, known once its data is loaded
        name = load_data(cfg)[0].default_augment
    return None if name == "none" else f"data.augment {name} (a store holds the plain images' logits)"


def trained_teachers(cfg: ClassificationRecipe, refusal: str) -> list[str]:
    """Train every teacher stage that trains once in <output_dir>/<name>/; overrides that load them instead."""
    set_determinism(cfg.seed, cfg.threads)
    run = Run(cfg, resume=False, overwrite=False, reuse_keys=TEACHER_KEYS + ("extra_teachers",), purpose="distill sweep")
    ctx = ClassificationRun(cfg, run)
    specs = []
    for i, spec in enumerate(teachers_of(cfg)):
        name = "teacher" if i == 0 else f"teacher-{i + 1}"
        if spec.train is not None:
            teacher_stage(ctx, spec, name, cfg.seed + 100 * i)  # the seed `distill train` gives it
            specs.append({**to_dict(spec), "train": None, "checkpoint": str(run.stage_dir(name))})
        else:
            specs.append(to_dict(spec))
    print(f"teachers ready in {run.path}; every trial loads them (no store: {refusal})", flush=True)
    return [override("teacher", specs[0]), override("extra_teachers", specs[1:])]


def variant(cfg: ClassificationRecipe, overrides: list[str]) -> ClassificationRecipe:
    """The recipe with overrides (and no sweep section), checked like a loaded one."""
    out = from_dict(ClassificationRecipe, apply_overrides({**to_dict(cfg), "sweep": None}, overrides))
    check(out)
    return out
