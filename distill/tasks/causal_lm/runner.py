"""Causal-LM runs: frozen HF teacher (or a teacher-signal store), HF student, token-level method,
held-out perplexity and divergence to the teacher.

Under `torchrun` every rank trains on its own share of each global batch (DDP, gloo on CPU; or,
with `train.distributed: fsdp`, FSDP2 shards of the student and optionally the teacher:
`distill.train.fsdp`); only rank 0 writes the run folder, reports and (DDP) checkpoints. The run folder holds
`student-<method>/` (checkpoints, metrics.jsonl, `model/` in Hugging Face format with the
tokenizer; with `student.lora` also `adapter/`, and `model/` is the merged model: `distill.models.lora`)
and summary.json. The teacher reaches the method as a teacher source
(`distill.models.teacher_sources`): live or stored, the method cannot tell.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from distill.data.store import StoreReader
from distill.data.token_stream import TokenBatches
from distill.eval.hacking import detect_hacking
from distill.eval.lm import evaluate_aligned, evaluate_lm
from distill.errors import ConfigError
from distill.data.align import Aligner
from distill.losses.aligned import VocabularyMap
from distill.methods.base import METHODS, build_method
from distill.methods.context import LMContext
from distill.models import FrozenTeacher
from distill.models.hf import (DTYPES, LMBody, check_same_tokenizer, config_from_dict, load_causal_lm, load_config,
                               load_tokenizer, resolve_dtype, student_from_config, tokenizer_hash, vocab_limit)
from distill.models.lora import (apply_lora, check_quantize, export_lora, load_quantized, parameter_counts,
                                 peft_module)
from distill.models.prune import prune_from_teacher
from distill.models.teacher_sources import AlignedTokenTeacher, LiveTokenTeacher, StoredAlignedTeacher, StoredTokenTeacher
from distill.models.vocab_map import build_projection, matched_ids
from distill.tasks.causal_lm.data import (PROMPT_FORMATS, TEACHER_TOKENIZER, check_held_out, dataset_fingerprint,
                                          held_out_tokens, load_lm_data, load_prompt_records, student_tokenizer_source,
                                          with_pad_token)
from distill.tasks.causal_lm.schema import CausalLMRecipe
from distill.tasks.causal_lm.table import table
from distill.tasks.skeleton import Run, check_method
from distill.train.core import Trainer, set_determinism
from distill.train.distributed import all_reduce_sum, barrier, init_from_env
from distill.train.fsdp import full_state_dict, release, shard_lm
from distill.train.on_policy import OnPolicyBatches


def check(cfg: CausalLMRecipe) -> None:
    check_method(cfg.method, "causal_lm", teacher=cfg.teacher is not None, store=cfg.store is not None,
                 on_policy_lmbda=cfg.on_policy.lmbda if cfg.on_policy is not None else None)
    if cfg.teacher is None and cfg.store is None and cfg.student.path is None:
        raise ConfigError("student: without a teacher, give student.path (nothing to scale down from)")
    if cfg.on_policy is not None and cfg.data.format not in PROMPT_FORMATS:
        raise ConfigError(f"on_policy needs prompts: set data.format to prompts or text_prompts (got {cfg.data.format!r})")
    if cfg.on_policy is not None and cfg.store is not None:
        raise ConfigError("on_policy samples new completions, which a store cannot score: use a live teacher")
    if cfg.student.init is not None:
        check_init_from_teacher(cfg)
    if cfg.student.lora is not None:
        peft_module()  # a missing peft fails here, before any model is loaded
        check_quantize(cfg.student.lora, cfg.student.path)
    if cfg.train.distributed == "fsdp":
        check_fsdp(cfg)


def check_fsdp(cfg: CausalLMRecipe) -> None:
    """train.distributed: fsdp shards the body the fused loss runs through; what runs the student another way is refused."""
    if cfg.on_policy is not None:
        raise ConfigError("train.distributed: fsdp: on_policy generation runs the student outside its sharded body; "
                          "use distributed: ddp")
    if cfg.student.lora is not None:
        raise ConfigError("train.distributed: fsdp: LoRA students train a few adapters, which fit one process: "
                          "use distributed: ddp")


def check_init_from_teacher(cfg: CausalLMRecipe) -> None:
    given = [k for k in ("path", "architecture") if getattr(cfg.student, k)] + (["config"] if cfg.student.config else [])
    if given:
        raise ConfigError(f"student.init.from_teacher builds the student from the teacher: drop student.{given[0]}")
    if cfg.teacher is None:
        raise ConfigError("student.init.from_teacher needs the teacher's weights: give teacher.path "
                          "(with a store too: the teacher is loaded once to cut the student out of it)")
    if method_class(cfg).cross_tokenizer or cfg.student.tokenizer:
        raise ConfigError("student.init.from_teacher: the student keeps the teacher's tokenizer, so a cross-tokenizer "
                          "method or another student.tokenizer does not apply")


# ----------------------------------------------------------------------------- models

def method_class(cfg: CausalLMRecipe) -> type:
    return METHODS.get(cfg.method.name, field="method.name").obj


def load_tokenizers(cfg: CausalLMRecipe) -> tuple[Any, Any]:
    """(student tokenizer, teacher tokenizer or None); different vocabularies need a cross-tokenizer method."""
    tokenizer = with_pad_token(load_tokenizer(student_tokenizer_source(cfg)))
    teacher_tokenizer = with_pad_token(load_tokenizer(cfg.teacher.path)) if cfg.teacher else None
    if teacher_tokenizer is not None and not method_class(cfg).cross_tokenizer:
        check_same_tokenizer(teacher_tokenizer, tokenizer)
    return tokenizer, teacher_tokenizer


def load_models(cfg: CausalLMRecipe) -> tuple[nn.Module | None, nn.Module, Any, Any]:
    """(teacher or None, student, tokenizer, teacher tokenizer or None); the student gets the run seed's init."""
    teacher = load_causal_lm(cfg.teacher.path, cfg.teacher.dtype) if cfg.teacher else None
    tokenizer, teacher_tokenizer = load_tokenizers(cfg)
    torch.manual_seed(cfg.seed)
    if cfg.student.init is not None:
        student = None  # cut out of the teacher once the calibration blocks are loaded (LMRun)
    elif cfg.student.path:
        student = load_student_path(cfg)
    else:
        base = load_config(cfg.student.architecture) if cfg.student.architecture else teacher.config
        student = student_from_config(base, cfg.student.config, cfg.student.dtype)
    return teacher, student, tokenizer, teacher_tokenizer


def load_student_path(cfg: CausalLMRecipe) -> nn.Module:
    """student.path loaded in student.dtype, or quantized through bitsandbytes (student.lora.quantize: QLoRA)."""
    lora = cfg.student.lora
    if lora is not None and lora.quantize is not None:
        return load_quantized(cfg.student.path, lora)
    return load_causal_lm(cfg.student.path, cfg.student.dtype)


def student_from_teacher(cfg: CausalLMRecipe, teacher: nn.Module, train_data: Any, pad_id: int) -> tuple[nn.Module, dict]:
    """The student pruned out of the teacher (student.init.from_teacher), importances measured on the first
    calibration_examples training blocks; returns it and what was kept."""
    spec = cfg.student.init.from_teacher
    n = min(spec.calibration_examples, len(train_data))
    examples = train_data[:n] if isinstance(train_data, np.ndarray) else [train_data[i] for i in range(n)]
    batches = TokenBatches(examples, batch_size=cfg.eval.batch_size, pad_id=pad_id, shuffle=False).all_batches()
    student, report = prune_from_teacher(teacher, spec, batches)
    return student.to(DTYPES[cfg.student.dtype]), report


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def vocabulary_map(tokenizer: Any, teacher_tokenizer: Any, needs: set[str]) -> VocabularyMap:
    """The parts of the tokenizer pair's shared vocabulary a cross-tokenizer method reads."""
    matched = matched_ids(tokenizer, teacher_tokenizer) if "matched" in needs else (torch.zeros(0, dtype=torch.long),) * 2
    if "matched" in needs and not len(matched[1]):
        raise ConfigError("the two vocabularies share no token string: the hybrid loss has nothing to match "
                          "(set method.hybrid: false)")
    projection = build_projection(tokenizer, teacher_tokenizer) if "projection" in needs else None
    return VocabularyMap(matched[0], matched[1], projection)


# ----------------------------------------------------------------------------- the run

class LMRun:
    """Everything one causal-LM run needs, built on every rank."""

    def __init__(self, cfg: CausalLMRecipe, folder: Run, rank: int, world: int):
        self.cfg, self.folder, self.rank, self.world = cfg, folder, rank, world
        self.reader: StoreReader | None = None
        self.teacher_tokenizer = None
        self.init_report: dict[str, Any] | None = None  # what student.init.from_teacher kept
        self.cross = method_class(cfg).cross_tokenizer
        teacher = self._open_store() if cfg.store is not None else self._load_live()
        if cfg.student.lora is not None:  # however the student was built: frozen base + adapters
            self.student = apply_lora(self.student, cfg.student.lora)
            if rank == 0:
                counts = parameter_counts(self.student)
                print(f"student.lora: {counts['trainable_params']:,} of {counts['params']:,} parameters trainable "
                      f"({100 * counts['trainable_params'] / counts['params']:.2f}%)")
        same_vocab = [teacher] if teacher is not None and not self.cross else []
        self.vocab, notice = vocab_limit(self.tokenizer, *same_vocab, self.student)
        if notice and rank == 0:
            print(notice)
        if self.cross and teacher is not None:
            self.teacher_vocab, _ = vocab_limit(self.teacher_tokenizer, teacher)
        self.teacher_body = FrozenTeacher(LMBody(teacher)) if teacher is not None else None
        self.teacher = self._teacher_source()
        self.body = LMBody(self.student)
        self.sharded = cfg.train.distributed == "fsdp" and world > 1  # FSDP2 (distill.train.fsdp)
        if self.sharded:
            shard_lm(self.body, cfg.train.fsdp)
            if cfg.train.fsdp.shard_teacher and self.teacher_body is not None:
                shard_lm(self.teacher_body.model, cfg.train.fsdp, frozen=True)
        self.ddp = nn.parallel.DistributedDataParallel(self.body) if world > 1 and not self.sharded else None
        self.records = load_prompt_records(cfg, self.tokenizer)[0] if cfg.on_policy is not None else None
        self.monitor = Monitor(cfg, self) if cfg.monitor is not None else None

    def _load_live(self) -> nn.Module | None:
        teacher, self.student, self.tokenizer, self.teacher_tokenizer = load_models(self.cfg)
        self.train_data, self.eval_data = load_lm_data(self.cfg, self.tokenizer)
        check_held_out(held_out_tokens(self.eval_data), self.cfg, "data")
        if self.student is None:  # cut from float32 weights whatever dtype the teacher runs in
            source = teacher if resolve_dtype(self.cfg.teacher.dtype) == "float32" else load_causal_lm(self.cfg.teacher.path)
            self.student, self.init_report = student_from_teacher(self.cfg, source, self.train_data,
                                                                  self.tokenizer.pad_token_id)
        return teacher

    def _open_store(self) -> None:
        """Train from a teacher-signal store: no teacher is loaded; the student comes from the stored config
        (a store of a teacher with another tokenizer: from student.path or student.architecture)."""
        cfg = self.cfg
        self.tokenizer = with_pad_token(load_tokenizer(cfg.student.tokenizer or cfg.store.path))
        expect = {"kind": "causal_lm", "tokenizer_hash": tokenizer_hash(self.tokenizer),
                  "dataset_fingerprint": dataset_fingerprint(cfg, self.tokenizer)}
        if self.cross:
            if not (cfg.student.path or cfg.student.architecture):
                raise ConfigError("training from a store of a teacher with another tokenizer: give student.path or "
                                  "student.architecture (the teacher's config is not the student's)")
            # the recipe's teacher, when it names one, must be the store's (its tokenizer is compared)
            source = cfg.teacher.path if cfg.teacher is not None else str(Path(cfg.store.path) / TEACHER_TOKENIZER)
            self.teacher_tokenizer = with_pad_token(load_tokenizer(source))
            expect["teacher_tokenizer_hash"] = tokenizer_hash(self.teacher_tokenizer)
        self.reader = StoreReader(cfg.store.path, expect=expect)
        manifest = self.reader.manifest
        if self.cross and not manifest.get("aligned"):
            raise ConfigError(f"store {cfg.store.path}: written for a token-level method; a cross-tokenizer method "
                              "needs a store cached with one (distill cache with this recipe)")
        check_held_out(sum(s["tokens"] for s in manifest["splits"].get("eval", [])), cfg, f"store {cfg.store.path}")
        torch.manual_seed(cfg.seed)
        self.train_data, self.eval_data = self.reader.examples("train"), self.reader.examples("eval")
        if cfg.student.init is not None:  # the teacher's weights are needed once, to cut the student out
            self.student, self.init_report = student_from_teacher(cfg, load_causal_lm(cfg.teacher.path),
                                                                  self.train_data, self.tokenizer.pad_token_id)
        elif cfg.student.path:
            self.student = load_student_path(cfg)
        else:
            base = load_config(cfg.student.architecture) if cfg.student.architecture else config_from_dict(manifest["teacher_config"])
            self.student = student_from_config(base, cfg.student.config, cfg.student.dtype)
        self.teacher_vocab = manifest.get("vocab_size", 0)
        return None

    def _teacher_source(self) -> Any:
        if self.reader is not None:
            m = self.reader.manifest
            if self.cross:
                needs = method_class(self.cfg).vocabulary_needs(self.cfg.method)
                return StoredAlignedTeacher(self.teacher_vocab, self.teacher_tokenizer.pad_token_id,
                                            vocabulary_map(self.tokenizer, self.teacher_tokenizer, needs))
            return StoredTokenTeacher(m["temperature"], self.cfg.store.tail, m["k"])
        if self.teacher_body is None:
            return None
        if not self.cross:
            return LiveTokenTeacher(self.teacher_body)
        needs = method_class(self.cfg).vocabulary_needs(self.cfg.method)
        return AlignedTokenTeacher(self.teacher_body, Aligner(self.tokenizer, self.teacher_tokenizer), self.teacher_vocab,
                                   self.teacher_tokenizer.pad_token_id,
                                   vocabulary_map(self.tokenizer, self.teacher_tokenizer, needs))

    def batches(self) -> TokenBatches:
        common = {"batch_size": self.cfg.train.batch_size, "seed": self.cfg.seed, "rank": self.rank, "world_size": self.world}
        if self.records is None:
            return TokenBatches(self.train_data, pad_id=self.tokenizer.pad_token_id, **common)
        per_epoch = len(self.records) // (self.cfg.train.batch_size * self.world)
        total = min(self.cfg.train.max_steps or 10 ** 12, self.cfg.train.epochs * max(per_epoch, 1))
        teacher = self.teacher_body.model.lm if self.teacher_body is not None else None
        return OnPolicyBatches(self.records, spec=self.cfg.on_policy, student=self.student, teacher=teacher,
                               tokenizer=self.tokenizer, vocab_size=self.vocab, total_steps=total, **common)

    def eval_batches(self, data: Any = None):
        stream = TokenBatches(self.eval_data if data is None else data, batch_size=self.cfg.eval.batch_size, rank=self.rank,
                              world_size=self.world, pad_id=self.tokenizer.pad_token_id, shuffle=False)
        return stream.all_batches()

    def evaluate(self, with_teacher: bool = True) -> dict[str, float]:
        if self.cross:  # another vocabulary: bits per byte on the same text, no token-level KL
            metrics = evaluate_aligned(self.body, self.teacher, self.eval_batches(), vocab_size=self.vocab,
                                       chunk_size=self.cfg.eval.chunk_size)
            metrics = {k: v for k, v in metrics.items() if not k.startswith("teacher_")}
        else:
            metrics = evaluate_lm(self.body, self.teacher if with_teacher else None, self.eval_batches(),
                                  vocab_size=self.vocab, chunk_size=self.cfg.eval.chunk_size)
        if self.monitor is not None:
            metrics.update(self.monitor.measure())
        if self.sharded:  # reading the head gathered the root units: free them
            release(self.body)
        return metrics

    def teacher_metrics(self) -> dict[str, Any]:
        if self.reader is not None:  # measured when the store was written
            m = self.reader.manifest
            if "teacher_eval_bits_per_byte" in m:
                return {"bits_per_byte": m["teacher_eval_bits_per_byte"], "params": m.get("teacher_params", 0),
                        "source": "store"}
            return {"perplexity": m["teacher_eval_perplexity"], "nll": m["teacher_eval_nll"],
                    "params": m.get("teacher_params", 0), "source": "store"}
        if self.cross:  # the teacher's figures on the aligned text (the student only provides the alignment)
            both = evaluate_aligned(self.body, self.teacher, self.eval_batches(), vocab_size=self.vocab,
                                    chunk_size=self.cfg.eval.chunk_size)
            metrics = {"bits_per_byte": both["teacher_bits_per_byte"], "char_perplexity": both["teacher_char_perplexity"],
                       "bytes": both["bytes"], "spans": both["spans"]}
        else:
            metrics = evaluate_lm(self.teacher_body.model, None, self.eval_batches(), vocab_size=self.vocab,
                                  chunk_size=self.cfg.eval.chunk_size)
        return {**metrics, "params": count_parameters(self.teacher_body), "dtype": resolve_dtype(self.cfg.teacher.dtype)}

    def init_metrics(self, folder: Path) -> dict[str, Any]:
        """The student right after student.init.from_teacher: size, held-out figures, kept layers / widths."""
        return {**self.evaluate(), **self.init_report, "params": count_parameters(self.student)}

    def train(self, folder: Path) -> dict[str, Any]:
        batches = self.batches()
        context = LMContext(steps_per_epoch=len(batches), epochs=self.cfg.train.epochs, num_train=len(self.train_data),
                            student_body=self.ddp or self.body, teacher=self.teacher, vocab_size=self.vocab,
                            tokenizer=self.tokenizer)
        method = build_method(self.cfg.method, student=self.student, teacher=self.teacher_body, context=context)
        trainer = Trainer(stage_dir=folder, modules={"student": self.student, "method": method}, objective=method,
                          batches=batches, cfg=self.cfg.train, evaluate=self.evaluate, progress=self.cfg.progress,
                          desc=folder.name, ddp_module=self.ddp, sharded_module=self.body if self.sharded else None,
                          frozen=(self.teacher_body,) if self.teacher_body is not None else ())
        started, tokens_before = time.perf_counter(), method.tokens_seen
        metrics = trainer.fit(resume=self.folder.resume)
        seconds = time.perf_counter() - started
        tokens = all_reduce_sum(float(method.tokens_seen - tokens_before))
        result = {**metrics, **parameter_counts(self.student), "train_seconds": seconds,
                  "step_seconds": trainer.step_seconds, "data_seconds": trainer.data_seconds, "steps": trainer.step,
                  "train_tokens_per_s": tokens / max(trainer.step_seconds, 1e-9),  # this session's steps only
                  "loop_tokens_per_s": tokens / max(trainer.step_seconds + trainer.data_seconds, 1e-9)}  # + generation
        if self.monitor is not None:
            result["teacher_hacking"] = self.monitor.verdict(trainer.history)
        weights = full_state_dict(self.student) if self.sharded else None  # gathered on rank 0 (every rank joins)
        if self.rank == 0:
            if self.cfg.student.lora is not None:  # adapter/ and the merged model/ (no peft needed to load it)
                for name in export_lora(self.student, folder, self.cfg.student.lora):
                    self.tokenizer.save_pretrained(folder / name)
            else:
                self.student.save_pretrained(folder / "model", state_dict=weights)
                self.tokenizer.save_pretrained(folder / "model")
        return result


class Monitor:
    """Proxy / golden divergences on held-out sequences at every evaluation (see distill.eval.hacking)."""

    def __init__(self, cfg: CausalLMRecipe, run: LMRun):
        self.cfg, self.run = cfg.monitor, run
        oracle = FrozenTeacher(LMBody(load_causal_lm(self.cfg.oracle, self.cfg.oracle_dtype))) if self.cfg.oracle else None
        self.oracle = LiveTokenTeacher(oracle) if oracle is not None else None
        self.sequences = run.eval_data[:self.cfg.max_sequences]

    def measure(self) -> dict[str, float]:
        out = {}
        for key, teacher in (("proxy_divergence", self.run.teacher), ("golden_divergence", self.oracle)):
            if teacher is not None:
                out[key] = evaluate_lm(self.run.body, teacher, self.run.eval_batches(self.sequences),
                                       vocab_size=self.run.vocab)["kl_to_teacher"]
        return out

    def verdict(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        evals = [r for r in history if r.get("kind") == "eval" and "proxy_divergence" in r]
        steps, proxy = [r["step"] for r in evals], [r["proxy_divergence"] for r in evals]
        golden = [r["golden_divergence"] for r in evals] if evals and "golden_divergence" in evals[0] else None
        return detect_hacking(steps, proxy, golden, window=self.cfg.window, fit_points=self.cfg.fit_points,
                              deviation=self.cfg.deviation)


def run(cfg: CausalLMRecipe, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any] | None:
    """Run a causal-LM recipe; rank 0 returns the summary (also in summary.json), other ranks None."""
    rank, world = init_from_env()
    set_determinism(cfg.seed, cfg.threads)
    folder = Run(cfg, resume=resume, overwrite=overwrite, rank=rank)
    barrier()
    ctx = LMRun(cfg, folder, rank, world)
    stages: dict[str, dict[str, Any]] = {}
    if ctx.teacher is not None:
        stages["teacher"] = ctx.teacher_metrics()
    if ctx.init_report is not None:
        stages["student-init"] = folder.stage("student-init", ctx.init_metrics)
    stages[f"student-{cfg.method.name}"] = folder.stage(f"student-{cfg.method.name}", ctx.train)
    barrier()
    if rank != 0:
        return None
    return folder.write_summary("causal_lm", stages, table, dataset=cfg.data.label(), world_size=world)
