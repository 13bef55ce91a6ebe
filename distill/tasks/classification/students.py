"""`distill students` for classification: the recipe's candidate students ranked by DisWOT at initialisation.

The teacher is the one `distill train` would use: loaded from `teacher.checkpoint` (with its
preprocessing), `random_init`, or the finished teacher stage of this recipe's run folder when the recipe
trains it (refused, with the command to run, when that stage does not exist yet). With
`students.teacher: random` it is a fresh copy of its architecture instead (the official code's setting).

Scoring batch: `batch_size` training images drawn with the seed, unaugmented and normalised as in
training. Features come from forward hooks (`FeatureTaps`): the relation term reads the last feature
stage (the map before pooling), the semantic term the input of the final linear layer and the logits.
Candidates (and a random teacher) run in training mode, so batch norm uses the batch's statistics as at
the first training step; a loaded or trained teacher runs in eval mode. Each candidate is built with the
seed `distill train` gives the recipe's student (seed + 1), so a candidate equal to the recipe's
student is scored at the initialisation it would train from.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn

from distill.config import diff_keys, to_dict
from distill.data.images import ImageSplits
from distill.data.stream import normalize
from distill.errors import ConfigError
from distill.eval.diswot import class_activation_maps, diswot
from distill.eval.footprint import count_parameters
from distill.models import FeatureTaps, feature_stages, penultimate_path
from distill.models.io import load_weights
from distill.models.preprocess import attach_preprocessing
from distill.models.registry import check_model_args
from distill.modes import module_mode
from distill.tasks.classification.data import load_data
from distill.tasks.classification.runner import build_model, init_near, preprocessing_of
from distill.tasks.classification.schema import CandidateSpec, ClassificationRecipe, ClassificationStudents
from distill.tasks.ranking import (candidate_label, candidate_row, check_labels, finish, gaussian_init, latency_ms,
                                   require_candidates, scoring_seed)
from distill.tasks.skeleton import CONFIG, DONE
from distill.train.core import set_determinism

TEACHER_KEYS = ("seed", "data", "teacher")  # what decides the teacher stage of a run folder


def check_candidates(cfg: ClassificationRecipe) -> None:
    """Load-time checks of the students section: every candidate builds, labels are distinct."""
    if cfg.students is None:
        return
    labels = []
    for i, spec in enumerate(cfg.students.candidates):
        where = f"students.candidates[{i}]"
        check_model_args(spec.name, spec.kwargs, where)
        if getattr(spec, "init", None) is not None:  # block pruning (distill.models.prune_blocks) is not wired in here
            raise ConfigError(f"{where}.init: distill students does not cut candidates out of the teacher yet; "
                              "list the architecture without init (or use init_from_teacher)")
        if spec.init_from_teacher is not None and (
                cfg.teacher is None or (cfg.teacher.name, cfg.teacher.kwargs) != (spec.name, spec.kwargs)):
            raise ConfigError(f"{where}.init_from_teacher needs a teacher of the candidate's architecture "
                              "(same name and kwargs)")
        labels.append(candidate_label(spec.label, spec.name, spec.kwargs))
    check_labels(labels)


def rank_students(cfg: ClassificationRecipe, *, seed: int | None = None) -> dict[str, Any]:
    """Score every candidate against the teacher on one batch (seed: of the batch and the candidates' init,
    default the recipe's); returns the ranked report (also written as JSON)."""
    opts = require_candidates(cfg)
    if cfg.teacher is None:
        raise ConfigError("distill students compares candidates with the teacher: the recipe needs a teacher section")
    seed = scoring_seed(cfg, seed)
    set_determinism(seed, cfg.threads)
    data, _ = load_data(cfg)
    x, y = scoring_batch(data, opts.batch_size, seed)
    teacher, source, trained = reference_teacher(cfg, opts, data, seed)
    t_relation, t_maps = measure(teacher, x, y, opts.teacher_feature, "students.teacher_feature", train_mode=not trained)
    teacher_info = {"arch": cfg.teacher.name, "source": source, "params": count_parameters(teacher),
                    "latency_ms": latency_ms(teacher, x, opts)}
    rows = []
    for i, spec in enumerate(opts.candidates):
        where = f"students.candidates[{i}]"
        model = build_candidate(spec, data, seed + 1, teacher, opts, where)
        s_relation, s_maps = measure(model, x, y, spec.feature, f"{where}.feature", train_mode=True)
        score = diswot(t_relation, s_relation, t_maps, s_maps)
        rows.append(candidate_row(candidate_label(spec.label, spec.name, spec.kwargs), spec, model,
                                  latency_ms(model, x, opts), score))
    return finish(cfg, "classification", teacher_info, rows, batch_size=len(y), seed=seed, dataset=cfg.data.label())


def scoring_batch(data: ImageSplits, batch_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """`batch_size` training images (all of them when fewer), drawn with `seed`, normalised; and their labels."""
    index = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(seed))[:batch_size]
    return normalize(data.train_x[index], data.mean, data.std), data.train_y[index]


def reference_teacher(cfg: ClassificationRecipe, opts: ClassificationStudents, data: ImageSplits,
                      seed: int) -> tuple[nn.Module, str, bool]:
    """(teacher, where it came from, whether it holds trained / loaded weights)."""
    spec = cfg.teacher
    if opts.teacher == "random":
        model = build_model(replace(spec, checkpoint=None), data, seed, "teacher")
        return (gaussian_init(model) if opts.init == "gaussian" else model), "random init", False
    if spec.train is None:  # built the way `distill train`'s teacher stage builds it, with the recipe's seed
        model = build_model(spec, data, cfg.seed, "teacher")
        attach_preprocessing(model, preprocessing_of(spec, data))
        return model, f"checkpoint {spec.checkpoint}" if spec.checkpoint else "random_init", spec.checkpoint is not None
    folder = finished_teacher_stage(cfg)
    model = build_model(replace(spec, checkpoint=None), data, cfg.seed, "teacher")
    load_weights(model, folder, what="teacher", arch=spec.name)
    return model, f"trained, {folder}", True


def finished_teacher_stage(cfg: ClassificationRecipe) -> Path:
    """<run>/teacher of this recipe, finished and trained with this recipe's teacher settings; else one line."""
    run = Path(cfg.output_dir) / cfg.name
    folder = run / "teacher"
    if not (folder / DONE).is_file():
        raise ConfigError(f"the recipe trains its teacher and {folder} holds no finished teacher stage: run "
                          "`distill train` on this recipe first (or set teacher.checkpoint to a trained teacher)")
    saved = yaml.safe_load((run / CONFIG).read_text()) if (run / CONFIG).is_file() else {}
    now = to_dict(cfg)
    changed = diff_keys({k: saved.get(k) for k in TEACHER_KEYS}, {k: now.get(k) for k in TEACHER_KEYS})
    if changed:
        raise ConfigError(f"{folder} was trained with other teacher settings ({'; '.join(changed[:2])}): train this "
                          "recipe's teacher first (`distill train`, another name= or output_dir=)")
    return folder


def build_candidate(spec: CandidateSpec, data: ImageSplits, seed: int, teacher: nn.Module,
                    opts: ClassificationStudents, where: str) -> nn.Module:
    model = build_model(spec, data, seed, where)
    if opts.init == "gaussian":
        gaussian_init(model)
    if spec.init_from_teacher is not None:
        init_near(model, teacher, spec.init_from_teacher)
    return model


def measure(model: nn.Module, x: Tensor, y: Tensor, feature: str | None, field: str, *,
            train_mode: bool) -> tuple[Tensor, Tensor]:
    """(features before pooling (B, ...), class activation maps (K, D)) of one forward of `x`, tapped by hooks."""
    relation_path = feature or last_stage(model, field)
    embedding_path = penultimate_path(model)
    with module_mode(train_mode, model), FeatureTaps(model, [relation_path, embedding_path]) as taps, \
            torch.no_grad():
        logits = model(x)
        relation, embedding = taps[relation_path], taps[embedding_path]
    return relation, class_activation_maps(embedding.flatten(1), logits, y)


def last_stage(model: nn.Module, field: str) -> str:
    try:
        return feature_stages(model)[-1]
    except ConfigError:
        raise ConfigError(f"{field}: {type(model).__name__} declares no feature stages; set {field} to the module "
                          "path of its feature map before pooling (see `named_modules()`)") from None
