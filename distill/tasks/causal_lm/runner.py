"""Causal-LM runs: frozen HF teacher, HF student, token-level method, held-out perplexity and KL.

Under `torchrun` every rank trains on its own share of each global batch (DDP, gloo on CPU);
only rank 0 writes the run folder, checkpoints and reports. The run folder holds
`student-<method>/` (checkpoints, metrics.jsonl, `model/` in Hugging Face format with the
tokenizer) and summary.json.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


import numpy as np
import torch
from torch import nn

from distill.config import to_dict
from distill.data.subset import subset_indices
from distill.data.text import jsonl_examples, packed_text_blocks, text_fingerprint
from distill.data.token_stream import TokenBatches
from distill.errors import ConfigError, DataError
from distill.eval.lm import evaluate_lm
from distill.methods.base import METHODS, TaskInfo, build_method
from distill.models import FrozenTeacher
from distill.models.hf import LMBody, check_same_tokenizer, load_causal_lm, load_tokenizer, student_from_config, vocab_limit
from distill.tasks.causal_lm.schema import CausalLMRecipe
from distill.train.checkpoint import atomic_write_text
from distill.train.core import Trainer, set_determinism
from distill.train.distributed import all_reduce_sum, barrier, init_from_env
from distill.train.rundir import mark_stage_done, open_run_dir, stage_done


def check(cfg: CausalLMRecipe) -> None:
    method_cls = METHODS.get(cfg.method.name, field="method.name").obj
    if method_cls.task != "causal_lm":
        raise ConfigError(f"method.name = {cfg.method.name!r} is a {method_cls.task} method; this is a causal_lm recipe "
                          "(use lm_kd, lm_ce or taid)")
    if cfg.teacher is None and cfg.store is None and method_cls.needs_teacher:
        raise ConfigError(f"method.name = {cfg.method.name!r} needs a teacher: add a teacher or a store section")
    if cfg.teacher is None and cfg.store is None and cfg.student.path is None:
        raise ConfigError("student: without a teacher, give student.path (nothing to scale down from)")
    if cfg.on_policy is not None and cfg.data.format not in PROMPT_FORMATS:
        raise ConfigError(f"on_policy needs prompts: set data.format to prompts or text_prompts (got {cfg.data.format!r})")
    if cfg.on_policy is not None and cfg.store is not None:
        raise ConfigError("on_policy samples new completions, which a store cannot score: use a live teacher")
    if cfg.method.name == "g_opd" and (cfg.on_policy is None or cfg.on_policy.lmbda < 1):
        raise ConfigError("method g_opd is a policy gradient on the student's own samples: set on_policy.lmbda: 1")


# ----------------------------------------------------------------------------- models

def load_models(cfg: CausalLMRecipe) -> tuple[nn.Module | None, nn.Module, Any]:
    """(teacher or None, student, tokenizer); the student gets the run seed's init."""
    teacher = load_causal_lm(cfg.teacher.path, cfg.teacher.dtype) if cfg.teacher else None
    tokenizer = load_tokenizer(cfg.student.tokenizer or (cfg.teacher.path if cfg.teacher else cfg.student.path))
    if cfg.teacher is not None and cfg.student.tokenizer:
        check_same_tokenizer(load_tokenizer(cfg.teacher.path), tokenizer)
    torch.manual_seed(cfg.seed)
    if cfg.student.path:
        student = load_causal_lm(cfg.student.path, cfg.student.dtype)
    else:
        student = student_from_config(teacher.config, cfg.student.config, cfg.student.dtype)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return teacher, student, tokenizer


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- data

PROMPT_FORMATS = ("prompts", "text_prompts")


def load_prompt_records(cfg: CausalLMRecipe, tokenizer: Any) -> tuple[list, list]:
    """(train, eval) prompt records {"prompt", "completion", "answer"} for on-policy training."""
    from distill.data.prompts import jsonl_prompts, text_prompts
    d = cfg.data
    if d.format == "prompts":
        read = lambda paths: [r for p in paths for r in jsonl_prompts(tokenizer, p, d.max_prompt_length)]  # noqa: E731
    else:
        read = lambda paths: text_prompts(tokenizer, paths, prompt_tokens=d.prompt_tokens,  # noqa: E731
                                          completion_tokens=d.completion_tokens, column=d.column)
    train = read(d.paths)
    if d.eval_paths:
        held = read(d.eval_paths)
    else:
        cut = len(train) - max(1, int(round(len(train) * d.eval_fraction))) if d.eval_fraction else len(train)
        train, held = train[:cut], train[cut:]
    return random_subset(train, d.max_train_examples), random_subset(held, d.max_eval_examples)


def random_subset(items: Any, size: int | None) -> Any:
    """`items` (a list or an array) restricted to `subset_indices`; all of them when size is None or too large."""
    if not size or size >= len(items):
        return items
    keep = subset_indices(len(items), size)
    return items[keep.numpy()] if isinstance(items, np.ndarray) else [items[int(i)] for i in keep]


def load_lm_data(cfg: CausalLMRecipe, tokenizer: Any) -> tuple[Any, Any]:
    """(train, eval) as packed int32 blocks (text) or lists of examples (jsonl, prompt formats)."""
    d = cfg.data
    if d.format in PROMPT_FORMATS:
        from distill.train.generation import completion_example
        train, held = load_prompt_records(cfg, tokenizer)
        as_examples = lambda rs: [completion_example(r["prompt"], r["completion"], tokenizer.eos_token_id) for r in rs]  # noqa: E731
        return as_examples(train), as_examples(held)
    if d.format == "text":
        settings = f"{d.block_size}|{d.eval_fraction}|{d.column}|{len(tokenizer)}|{tokenizer.eos_token_id}|{sorted(d.eval_paths)}"
        train_eval = packed_text_blocks(tokenizer, d.paths, block_size=d.block_size,
                                        eval_fraction=0.0 if d.eval_paths else d.eval_fraction, column=d.column,
                                        fingerprint=text_fingerprint(d.paths, _tok_key(tokenizer) + settings))
        train, held = train_eval["train"], train_eval["eval"]
        if d.eval_paths:
            held = packed_text_blocks(tokenizer, d.eval_paths, block_size=d.block_size, eval_fraction=0.0, column=d.column,
                                      fingerprint=text_fingerprint(d.eval_paths, _tok_key(tokenizer) + settings))["train"]
    else:
        train = [e for p in d.paths for e in jsonl_examples(tokenizer, p, d.max_length)]
        if d.eval_paths:
            held = [e for p in d.eval_paths for e in jsonl_examples(tokenizer, p, d.max_length)]
        else:
            cut = len(train) - max(1, int(round(len(train) * d.eval_fraction))) if d.eval_fraction else len(train)
            train, held = train[:cut], train[cut:]
    train, held = random_subset(train, d.max_train_examples), random_subset(held, d.max_eval_examples)
    if len(train) == 0:
        raise DataError(f"data.paths {d.paths}: no training examples (texts shorter than one block of {d.block_size} tokens?)")
    return train, held


def _tok_key(tokenizer: Any) -> str:
    from distill.models.hf import tokenizer_hash
    return tokenizer_hash(tokenizer)


# ----------------------------------------------------------------------------- the run

class LMRun:
    """Everything one causal-LM run needs, built on every rank."""

    def __init__(self, cfg: CausalLMRecipe, run_dir: Path, rank: int, world: int):
        self.cfg, self.run_dir, self.rank, self.world = cfg, run_dir, rank, world
        self.store, self.reader = None, None
        if cfg.store is not None:
            teacher = self._open_store()
        else:
            teacher, self.student, self.tokenizer = load_models(cfg)
            self.train_data, self.eval_data = load_lm_data(cfg, self.tokenizer)
        self.vocab, notice = vocab_limit(self.tokenizer, *([teacher] if teacher is not None else []), self.student)
        if notice and rank == 0:
            print(notice)
        self.teacher_body = FrozenTeacher(LMBody(teacher)) if teacher is not None else None
        self.body = LMBody(self.student)
        self.ddp = nn.parallel.DistributedDataParallel(self.body) if world > 1 else None
        self.records = load_prompt_records(cfg, self.tokenizer)[0] if cfg.on_policy is not None else None
        self.monitor = Monitor(cfg, self) if cfg.monitor is not None else None
        self.stream = None

    def _open_store(self) -> None:
        """Train from a teacher-signal store: no teacher is loaded; the student comes from the stored config."""
        from distill.data.store import StoreReader
        from distill.models.hf import tokenizer_hash
        from distill.tasks.causal_lm.cache import dataset_fingerprint
        cfg = self.cfg
        self.tokenizer = load_tokenizer(cfg.student.tokenizer or cfg.store.path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.reader = StoreReader(cfg.store.path, expect={"kind": "causal_lm", "tokenizer_hash": tokenizer_hash(self.tokenizer),
                                                          "dataset_fingerprint": dataset_fingerprint(cfg, self.tokenizer)})
        manifest = self.reader.manifest
        self.store = {"temperature": manifest["temperature"], "tail": cfg.store.tail}
        torch.manual_seed(cfg.seed)
        if cfg.student.path:
            self.student = load_causal_lm(cfg.student.path, cfg.student.dtype)
        else:
            from transformers import AutoConfig
            base = AutoConfig.for_model(**manifest["teacher_config"])
            self.student = student_from_config(base, cfg.student.config, cfg.student.dtype)
        self.train_data, self.eval_data = self.reader.examples("train"), self.reader.examples("eval")
        return None

    def batches(self) -> TokenBatches:
        common = {"batch_size": self.cfg.train.batch_size, "seed": self.cfg.seed, "rank": self.rank, "world_size": self.world}
        if self.records is None:
            self.stream = TokenBatches(self.train_data, pad_id=self.tokenizer.pad_token_id, **common)
            return self.stream
        from distill.train.on_policy import OnPolicyBatches
        per_epoch = len(self.records) // (self.cfg.train.batch_size * self.world)
        total = min(self.cfg.train.max_steps or 10 ** 12, self.cfg.train.epochs * max(per_epoch, 1))
        teacher = self.teacher_body.model.lm if self.teacher_body is not None else None
        self.stream = OnPolicyBatches(self.records, spec=self.cfg.on_policy, student=self.student, teacher=teacher,
                                      tokenizer=self.tokenizer, vocab_size=self.vocab, total_steps=total, **common)
        return self.stream

    def eval_batches(self, data: Any = None):
        stream = TokenBatches(self.eval_data if data is None else data, batch_size=self.cfg.eval.batch_size, rank=self.rank,
                              world_size=self.world, pad_id=self.tokenizer.pad_token_id, shuffle=False)
        return stream.all_batches()

    def evaluate(self, teacher: bool = True) -> dict[str, float]:
        metrics = evaluate_lm(self.body, self.teacher_body if teacher else None, self.eval_batches(),
                              vocab_size=self.vocab, chunk_size=self.cfg.eval.chunk_size, store=self.store)
        if self.monitor is not None:
            metrics.update(self.monitor.measure())
        observe = getattr(self.stream, "observe_validation", None)
        if observe is not None:  # DistiLLM's adaptive schedule reacts to the validation loss
            observe(metrics["nll"])
        return metrics

    def teacher_metrics(self) -> dict[str, Any]:
        if self.reader is not None:  # measured when the store was written
            m = self.reader.manifest
            return {"perplexity": m["teacher_eval_perplexity"], "nll": m["teacher_eval_nll"],
                    "params": m.get("teacher_params", 0), "source": "store"}
        stream = TokenBatches(self.eval_data, batch_size=self.cfg.eval.batch_size, rank=self.rank, world_size=self.world,
                              pad_id=self.tokenizer.pad_token_id, shuffle=False)
        metrics = evaluate_lm(self.teacher_body.model, None, stream.all_batches(), vocab_size=self.vocab,
                              chunk_size=self.cfg.eval.chunk_size)
        return {**metrics, "params": count_parameters(self.teacher_body)}

    def train(self, resume: bool) -> dict[str, Any]:
        stage = self.run_dir / f"student-{self.cfg.method.name}"
        done = stage_done(stage) if resume else None
        if done is not None:
            return done
        batches = self.batches()
        info = TaskInfo(steps_per_epoch=len(batches), epochs=self.cfg.train.epochs, num_train=len(self.train_data),
                        extra={"student_body": self.ddp or self.body, "teacher_body": self.teacher_body,
                               "vocab_size": self.vocab, "tokenizer": self.tokenizer, "store": self.store})
        method = build_method(self.cfg.method, student=self.student, teacher=self.teacher_body, info=info)
        trainer = Trainer(stage_dir=stage, modules={"student": self.student, "method": method}, objective=method,
                          batches=batches, cfg=self.cfg.train, evaluate=self.evaluate, progress=self.cfg.progress,
                          desc=stage.name, ddp_module=self.ddp, extra_log=getattr(batches, "log_stats", None),
                          frozen=(self.teacher_body,) if self.teacher_body is not None else ())
        started, tokens_before = time.perf_counter(), method.tokens_seen
        metrics = trainer.fit(resume=resume)
        seconds = time.perf_counter() - started
        tokens = all_reduce_sum(float(method.tokens_seen - tokens_before))
        result = {**metrics, "params": count_parameters(self.student), "train_seconds": seconds,
                  "step_seconds": trainer.step_seconds, "data_seconds": trainer.data_seconds, "steps": trainer.step,
                  "train_tokens_per_s": tokens / max(trainer.step_seconds, 1e-9),  # this session's steps only
                  "loop_tokens_per_s": tokens / max(trainer.step_seconds + trainer.data_seconds, 1e-9)}  # + generation
        if self.monitor is not None:
            result["teacher_hacking"] = self.monitor.verdict(trainer.history)
        if self.rank == 0:
            self.student.save_pretrained(stage / "model")
            self.tokenizer.save_pretrained(stage / "model")
            mark_stage_done(stage, result)
        return result


class Monitor:
    """Proxy / golden divergences on held-out sequences at every evaluation (see distill.eval.hacking)."""

    def __init__(self, cfg: CausalLMRecipe, run: "LMRun"):
        self.cfg, self.run = cfg.monitor, run
        self.oracle = FrozenTeacher(LMBody(load_causal_lm(self.cfg.oracle, self.cfg.oracle_dtype))) if self.cfg.oracle else None
        self.sequences = run.eval_data[:self.cfg.max_sequences]

    def measure(self) -> dict[str, float]:
        out = {}
        if self.run.teacher_body is not None:
            out["proxy_divergence"] = evaluate_lm(self.run.body, self.run.teacher_body, self.run.eval_batches(self.sequences),
                                                  vocab_size=self.run.vocab)["kl_to_teacher"]
        if self.oracle is not None:
            out["golden_divergence"] = evaluate_lm(self.run.body, self.oracle, self.run.eval_batches(self.sequences),
                                                   vocab_size=self.run.vocab)["kl_to_teacher"]
        return out

    def verdict(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        from distill.eval.hacking import detect_hacking
        evals = [r for r in history if r.get("kind") == "eval" and "proxy_divergence" in r]
        steps, proxy = [r["step"] for r in evals], [r["proxy_divergence"] for r in evals]
        golden = [r["golden_divergence"] for r in evals] if evals and "golden_divergence" in evals[0] else None
        return detect_hacking(steps, proxy, golden, window=self.cfg.window, fit_points=self.cfg.fit_points,
                              deviation=self.cfg.deviation)


def run(cfg: CausalLMRecipe, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any] | None:
    """Run a causal-LM recipe; rank 0 returns the summary (also in summary.json), other ranks None."""
    rank, world = init_from_env()
    set_determinism(cfg.seed, cfg.threads)
    run_dir = open_run_dir(cfg, resume=resume, overwrite=overwrite, rank=rank) if rank == 0 else Path(cfg.output_dir) / cfg.name
    barrier()
    ctx = LMRun(cfg, run_dir, rank, world)
    stages: dict[str, dict[str, Any]] = {}
    if ctx.teacher_body is not None or ctx.reader is not None:
        stages["teacher"] = ctx.teacher_metrics()
    stages[f"student-{cfg.method.name}"] = ctx.train(resume)
    barrier()
    if rank != 0:
        return None
    summary = {"name": cfg.name, "task": "causal_lm", "dataset": ", ".join(cfg.data.paths), "method": cfg.method.name,
               "config": to_dict(cfg), "stages": stages, "world_size": world}
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return summary


