"""`distill students` for causal LMs: the recipe's candidate students ranked by DisWOT at initialisation.

The same score as for classification (`distill.eval.diswot`), read off token positions instead of images:

    relation  the N x N Gram of the final hidden states (the input of the LM head) at `max_tokens`
              valid next-token positions of the batch, drawn with the seed;
    semantic  the K x K inter-class Gram of the LM head's cross-entropy weight gradient, rows restricted
              to the K distinct target tokens at those positions (the full vocabulary's V x V matrix is
              out of reach; these are the classes the batch exercises). An LM has no class activation
              maps over space, so the head's gradient rows are its semantic maps.

Every candidate must share the teacher's tokenizer (class k is the same token on both sides); a
candidate with another vocabulary is refused. The teacher is loaded in float32 whatever `teacher.dtype`
says (one batch; pruned candidates are cut from those weights too), and every model runs in eval mode.
Latency: the median CPU time of the decoder forward (final hidden states, head excluded: its B x T x V
logits would dominate memory) on the batch. Candidates are built with the recipe's student seed.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from distill.config import to_dict
from distill.data.token_stream import TokenBatches, next_token_targets
from distill.errors import ConfigError
from distill.eval.diswot import class_activation_maps, diswot
from distill.eval.footprint import count_parameters
from distill.models.hf import (LMBody, load_causal_lm, load_config, load_tokenizer, student_from_config,
                               vocab_limit)
from distill.tasks.causal_lm.data import load_lm_data, with_pad_token
from distill.tasks.causal_lm.runner import student_from_teacher
from distill.tasks.causal_lm.schema import CausalLMRecipe, LMCandidateSpec, LMStudents
from distill.tasks.ranking import (candidate_label, candidate_row, check_labels, finish, gaussian_init, latency_ms,
                                   require_candidates, scoring_seed)
from distill.train.core import set_determinism


def check_candidates(cfg: CausalLMRecipe) -> None:
    """Load-time checks of the students section: a teacher to compare with, buildable specs, distinct labels."""
    if cfg.students is None or not cfg.students.candidates:
        return
    if cfg.teacher is None:
        raise ConfigError("students: distill students compares candidates with the live teacher: give teacher.path")
    for i, spec in enumerate(cfg.students.candidates):
        given = [k for k in ("path", "architecture") if getattr(spec, k)] + (["config"] if spec.config else [])
        if spec.init is not None and given:
            raise ConfigError(f"students.candidates[{i}].init.from_teacher builds the candidate from the teacher: "
                              f"drop students.candidates[{i}].{given[0]}")
        if spec.lora is not None:  # B = 0 at the start: an adapter leaves the candidate's score unchanged
            raise ConfigError(f"students.candidates[{i}].lora: a LoRA starts as the identity, so it does not change "
                              "the DisWOT score at initialisation: drop it")
    check_labels([label_of(spec) for spec in cfg.students.candidates])


def label_of(spec: LMCandidateSpec) -> str:
    if spec.init is not None:
        cut = {k: v for k, v in to_dict(spec.init.from_teacher).items() if v is not None and k != "calibration_examples"}
        return candidate_label(spec.label, "from_teacher", cut)
    if spec.path or spec.architecture:
        return candidate_label(spec.label, Path(spec.path or spec.architecture).name, spec.config)
    return candidate_label(spec.label, "config" if spec.config else "teacher config", spec.config)


def rank_students(cfg: CausalLMRecipe, *, seed: int | None = None) -> dict[str, Any]:
    """Score every candidate against the teacher on one batch; returns the ranked report (also written as JSON)."""
    opts = require_candidates(cfg)
    seed = scoring_seed(cfg, seed)
    set_determinism(seed, cfg.threads)
    tokenizer = with_pad_token(load_tokenizer(cfg.teacher.path))
    for i, spec in enumerate(opts.candidates):  # before any model is loaded
        check_vocabulary(spec, tokenizer, f"students.candidates[{i}]")
    teacher = load_causal_lm(cfg.teacher.path, "float32")
    train_data, _ = load_lm_data(cfg, tokenizer)
    batch, positions, labels = scoring_batch(train_data, opts, seed, tokenizer.pad_token_id)
    classes = labels.unique()
    reference = random_teacher(teacher, opts, seed) if opts.teacher == "random" else teacher
    t_relation, t_maps = measure(reference, batch, positions, labels, classes, tokenizer)
    teacher_info = {"arch": type(teacher).__name__, "source": "random init" if opts.teacher == "random" else cfg.teacher.path,
                    "params": count_parameters(reference), "latency_ms": latency_ms(LMBody(reference), batch["input_ids"], opts)}
    rows = []
    for i, spec in enumerate(opts.candidates):
        model = build_candidate(cfg, spec, teacher, train_data, tokenizer, seed)
        s_relation, s_maps = measure(model, batch, positions, labels, classes, tokenizer)
        score = diswot(t_relation, s_relation, t_maps, s_maps)
        rows.append(candidate_row(label_of(spec), spec, model, latency_ms(LMBody(model), batch["input_ids"], opts), score))
    return finish(cfg, "causal_lm", teacher_info, rows, batch_size=int(batch["input_ids"].shape[0]), seed=seed,
                  tokens=int(labels.numel()), classes=int(classes.numel()), dataset=cfg.data.label())


def scoring_batch(train_data: Any, opts: LMStudents, seed: int, pad_id: int) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """(batch of `batch_size` training examples, the drawn valid positions (N, 2) as (row, column), their targets (N,))."""
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(train_data), generator=g)[:opts.batch_size]
    batch = TokenBatches(train_data, batch_size=len(index), pad_id=pad_id, shuffle=False).make_batch(index)
    targets, mask = next_token_targets(batch)
    valid = mask.nonzero()
    if len(valid) < 2:
        raise ConfigError(f"students.batch_size = {opts.batch_size}: the batch has {len(valid)} valid next-token "
                          "position(s); the relation term needs at least 2")
    positions = valid[torch.randperm(len(valid), generator=g)[:opts.max_tokens]]
    return batch, positions, targets[positions[:, 0], positions[:, 1]]


def random_teacher(teacher: nn.Module, opts: LMStudents, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = student_from_config(teacher.config, {})
    return gaussian_init(model) if opts.init == "gaussian" else model


def build_candidate(cfg: CausalLMRecipe, spec: LMCandidateSpec, teacher: nn.Module, train_data: Any, tokenizer: Any,
                    seed: int) -> nn.Module:
    """The candidate as `distill train` would build the recipe's student from `spec` (seed: the run's student seed)."""
    torch.manual_seed(seed)
    if spec.init is not None:
        model, _ = student_from_teacher(replace(cfg, student=spec), teacher, train_data, tokenizer.pad_token_id)
    elif spec.path:
        model = load_causal_lm(spec.path, spec.dtype)
    else:
        base = load_config(spec.architecture) if spec.architecture else teacher.config
        model = student_from_config(base, spec.config, spec.dtype)
    return gaussian_init(model) if cfg.students.init == "gaussian" else model


def check_vocabulary(spec: LMCandidateSpec, tokenizer: Any, where: str) -> None:
    source = spec.tokenizer or spec.path or spec.architecture
    if source and load_tokenizer(source).get_vocab() != tokenizer.get_vocab():
        raise ConfigError(f"{where}: its tokenizer ({source}) is not the teacher's; DisWOT compares the two token by "
                          "token, so candidates must share the teacher's vocabulary")


def measure(model: nn.Module, batch: dict[str, Tensor], positions: Tensor, labels: Tensor, classes: Tensor,
            tokenizer: Any) -> tuple[Tensor, Tensor]:
    """(final hidden states (N, H) at the drawn positions, the head's semantic maps (K, H) for `classes`)."""
    vocab, _ = vocab_limit(tokenizer, model)
    body = LMBody(model)
    body.eval()
    with torch.no_grad():
        hidden = body(batch["input_ids"], batch.get("attention_mask"))[positions[:, 0], positions[:, 1]].float()
        logits = hidden @ body.head_weight[:vocab].float().T
    return hidden, class_activation_maps(hidden, logits, labels, classes)
