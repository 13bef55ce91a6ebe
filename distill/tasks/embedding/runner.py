"""Sentence-embedding runs: a frozen teacher encoder (or a store of its embeddings), a student encoder trained
by an embedding method on the shared Trainer, exported as a sentence-transformers folder and evaluated.

    runs/<name>/
      student-<method>/     checkpoints/, metrics.jsonl (loss parts; held-out alignment to the teacher per
                            evaluation), model/ (the sentence-transformers folder), done.json
      student-<baseline>/   with `baseline: true` (same init, data and schedule, no teacher)
      summary.json          teacher and student rows with the end-of-run evaluation (distill.eval.embeddings)

The teacher reaches the method as an embedding source (distill.models.teacher_sources): its embeddings
of every distinct training text computed once and looked up (teacher.embeddings: once, the default),
read from a store (no teacher is loaded), or the live teacher on every batch. Finished stages are
skipped on --resume and an interrupted one continues from its last checkpoint (distill.tasks.skeleton.Run).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch

from distill.errors import ConfigError, DataError
from distill.eval.embeddings import CachedEncoder, Limits, check_suites, evaluate_embeddings, evaluated_texts
from distill.eval.teacher_alignment import alignment_metrics
from distill.methods.base import METHODS, MethodConfig, build_method
from distill.methods.context import EmbeddingContext
from distill.models import FrozenTeacher
from distill.models.encoder_students import attach_projection, config_student, pooled_features, static_student
from distill.models.encoders import (TextEncoder, export_sentence_transformers, load_sentence_encoder,
                                     transformers_module)
from distill.models.teacher_sources import LiveEmbeddings, StoredEmbeddings
from distill.modes import eval_mode, set_dropout
from distill.tasks.embedding.batches import TextBatches
from distill.tasks.embedding.data import EmbeddingData, check_format, dataset_fingerprint, for_batches, load_data, \
    texts_fingerprint
from distill.tasks.embedding.schema import EmbeddingRecipe
from distill.tasks.embedding.signal import TableEncoder, embed_texts, embedding_table, load_teacher, open_store, \
    stored_table
from distill.tasks.embedding.table import table
from distill.tasks.skeleton import Run, baseline_method, check_method
from distill.train.core import Trainer, set_determinism

TASK = "embedding"
STORED_DTYPE = torch.float16  # what teacher.embeddings: once keeps (a store's default: the two train alike)


# ----------------------------------------------------------------------------- load-time checks

def check(cfg: EmbeddingRecipe) -> None:
    cls = check_method(cfg.method, TASK, teacher=cfg.teacher is not None, store=cfg.store is not None)
    check_student(cfg)
    check_format(cls.batch_format, cfg.data.format, f"method.name = {cfg.method.name!r}")
    if cfg.train.grad_accum > 1 and cls.batch_format != "sentences":
        raise ConfigError(f"train.grad_accum = {cfg.train.grad_accum}: {cls.batch_format} batches nest sentence "
                          "batches, which the trainer does not split; raise train.batch_size instead")
    if cfg.store is not None and cfg.teacher is not None and cfg.teacher.embeddings == "live":
        raise ConfigError("teacher.embeddings: live runs the teacher on every batch, but a store section replaces "
                          "the teacher with its stored embeddings: drop one of the two")
    if cfg.eval.suites:
        try:
            check_suites(cfg.eval.suites)
        except ConfigError as exc:
            raise ConfigError(f"eval.{exc}") from None
    if cfg.baseline and not cls.baseline:
        base = baseline_method(TASK)
        check_format(METHODS.get(base.name).obj.batch_format, cfg.data.format, f"baseline: true ({base.name})")


def check_student(cfg: EmbeddingRecipe) -> None:
    s = cfg.student
    kinds = [k for k, given in (("path", s.path), ("config", s.config), ("static", s.static)) if given]
    if len(kinds) != 1:
        raise ConfigError("student: give exactly one of path (a pretrained encoder), config (a random-init copy of "
                          f"base's architecture) or static ({{dim: ...}}); got {', '.join(kinds) or 'none'}")
    if s.path and s.base:
        raise ConfigError("student.base is read by config and static students only (a path student is its own base)")
    if not s.path and cfg.teacher is None and cfg.store is None:
        raise ConfigError(f"student.{kinds[0]}: a new student is sized to the teacher's width: give a teacher or "
                          "a store")
    if not s.path and s.projection_init != "orthogonal":
        raise ConfigError(f"student.projection_init = {s.projection_init!r} fits the projection on a pretrained "
                          "student's features; config and static students start orthogonal")
    if s.static and s.dropout is not None:
        raise ConfigError("student.dropout: a static student has no dropout to set (leave it out)")
    if s.static and s.static.init_from_teacher and cfg.teacher is None:
        raise ConfigError("student.static.init_from_teacher reads the teacher's input embeddings: give teacher.path "
                          "(or set init_from_teacher: false and student.base)")
    if not s.path and not s.base and cfg.teacher is None:
        raise ConfigError(f"student.{kinds[0]}: give student.base (the encoder whose architecture / tokenizer to use)")


def limits_of(cfg: EmbeddingRecipe) -> Limits:
    e = cfg.eval
    return Limits(e.max_examples, e.max_queries, e.max_documents, e.seed)


def suite_texts(cfg: EmbeddingRecipe) -> list[str]:
    """The texts the end-of-run evaluation reads (sorted; none without suites)."""
    return evaluated_texts(cfg.eval.suites, limits_of(cfg), cfg.eval.data_dir) if cfg.eval.suites else []


def recipe_data(cfg: EmbeddingRecipe, evaluated: list[str]) -> EmbeddingData:
    return load_data(cfg.data, set(evaluated) if cfg.eval.exclude_from_training else set(), cfg.eval.data_dir)


# ----------------------------------------------------------------------------- the run

class EmbeddingRun:
    """What every stage of a run shares: data, the teacher signal (loaded teacher or store), the evaluation."""

    def __init__(self, cfg: EmbeddingRecipe, folder: Run):
        self.cfg, self.folder = cfg, folder
        self.suite_texts = suite_texts(cfg)
        self.data = recipe_data(cfg, self.suite_texts)
        self.warnings: list[str] = []
        self.teacher: TextEncoder | None = None
        self.manifest: dict[str, Any] | None = None
        self.train_table = self.held_table = None  # (n, D) teacher embeddings by text index
        self.teacher_encode: CachedEncoder | None = None  # the end-of-run evaluation's teacher, shared by stages
        self.dim = 0
        if cfg.store is not None:
            self._open_store()
        elif cfg.teacher is not None:
            self._load_teacher()

    @property
    def source(self) -> str:
        return "store" if self.manifest is not None else self.cfg.teacher.embeddings if self.teacher else "none"

    def _open_store(self) -> None:
        """Train from the store: no teacher is loaded; the evaluation's teacher rows are its "suite" split."""
        reader = open_store(self.cfg, dataset_fingerprint(self.data))
        self.manifest = reader.manifest
        self.dim = int(self.manifest["dim"])
        self.train_table, self.held_table = stored_table(reader, "train"), stored_table(reader, "eval")
        if not self.suite_texts:
            return
        if self.manifest.get("suite_fingerprint") != texts_fingerprint(self.suite_texts):
            self.warnings.append(f"store {self.cfg.store.path} holds the teacher's embeddings of another evaluation "
                                 "draw (eval suites or limits changed): the teacher rows are left out; re-run "
                                 "`distill cache` to add them")
            print(f"warning: {self.warnings[-1]}", flush=True)
            return
        lookup = TableEncoder(self.suite_texts, stored_table(reader, "suite"))
        self.teacher_encode = CachedEncoder(lookup, "teacher", self.cfg.eval.batch_size, self.cfg.progress)

    def _load_teacher(self) -> None:
        cfg = self.cfg
        self.teacher = load_teacher(cfg)
        self.dim = self.teacher.dim
        embed = dict(batch_size=cfg.teacher.batch_size, dtype=STORED_DTYPE, progress=cfg.progress)
        if cfg.teacher.embeddings == "once":
            self.train_table = embedding_table(self.teacher, self.data.train.texts, desc="teacher (train)", **embed)
        self.held_table = embedding_table(self.teacher, self.data.held.texts, desc="teacher (held-out)", **embed)
        if self.suite_texts:
            self.teacher_encode = CachedEncoder(self.teacher.encode, "teacher", cfg.eval.batch_size, cfg.progress)

    def embedding_source(self) -> StoredEmbeddings | LiveEmbeddings | None:
        if self.train_table is not None:
            return StoredEmbeddings(self.train_table)
        return LiveEmbeddings(FrozenTeacher(self.teacher)) if self.teacher is not None else None

    def teacher_stage(self) -> dict[str, Any]:
        """The teacher's entry of the summary (its evaluation figures are in each student's "eval")."""
        if self.manifest is not None:
            return {"source": "store", "dim": self.dim, "store": self.cfg.store.path,
                    **self.manifest.get("teacher_figures", {})}
        if self.teacher is None:
            return {}
        return {"source": self.source, "dim": self.dim, "path": self.cfg.teacher.path,
                "params": sum(p.numel() for p in self.teacher.parameters())}

    # ------------------------------------------------------------------ students

    def build_student(self, seed: int) -> TextEncoder:
        """The student of the recipe, at the teacher's width (a learned projection where it differs), with
        its dropout set to student.dropout where that is given."""
        student = self._new_student(seed)
        if self.cfg.student.dropout is not None:
            set_dropout(student, self.cfg.student.dropout)
        return student

    def _new_student(self, seed: int) -> TextEncoder:
        s, teacher_source = self.cfg.student, self.cfg.teacher.path if self.cfg.teacher else None
        torch.manual_seed(seed)
        if s.config:
            return config_student(s.base or teacher_source, s.config, self.dim, seed)
        if s.static:
            return self._static_student(seed)
        student = load_sentence_encoder(s.path)
        if not self.dim or student.dim == self.dim:
            return student
        pairs = self._projection_pairs(student) if s.projection_init == "least_squares" else None
        return attach_projection(student, self.dim, s.projection_init, pairs, seed)

    def _static_student(self, seed: int) -> TextEncoder:
        spec = self.cfg.student.static
        teacher = None
        if spec.init_from_teacher:  # the teacher's input-embedding table: loaded once even when training from a store
            teacher = self.teacher or load_teacher(self.cfg)
            tokenizer = teacher.tokenizer
        else:
            source = self.cfg.student.base or self.cfg.teacher.path
            tokenizer = transformers_module().AutoTokenizer.from_pretrained(str(Path(source).expanduser()),
                                                                            local_files_only=True)
        return static_student(tokenizer, spec.dim, self.dim, teacher=teacher, teacher_table=spec.teacher_table,
                              sif=spec.sif if teacher is not None else None, normalize=spec.normalize, seed=seed,
                              progress=self.cfg.progress)

    def _projection_pairs(self, student: TextEncoder) -> tuple[torch.Tensor, torch.Tensor]:
        """(student pooled features, teacher embeddings) of the first projection_texts training texts."""
        texts = self.data.train.texts[:self.cfg.student.projection_texts]
        if self.train_table is not None:
            targets = self.train_table[:len(texts)].float()
        else:
            targets = embed_texts(self.teacher, texts, self.cfg.teacher.batch_size)
        return pooled_features(student, texts), targets

    def tokenizer_of(self, student: TextEncoder) -> Callable[[list[str]], dict[str, torch.Tensor]]:
        """The student's tokenization of training texts, cut to data.max_length (never beyond its own length)."""
        cap = self.cfg.data.max_length
        if cap is not None and student.max_length is not None:
            cap = min(cap, student.max_length)
        return lambda texts: student.tokenize(texts, max_length=cap)

    # ------------------------------------------------------------------ one stage

    def batches(self, student: TextEncoder, batch_format: str) -> TextBatches:
        split = for_batches(self.data.train, batch_format, self.cfg.data.format)
        batches = TextBatches(split, batch_format, self.tokenizer_of(student), batch_size=self.cfg.train.batch_size,
                              seed=self.cfg.seed, group_by_length=self.cfg.data.group_by_length)
        if len(batches) == 0:
            raise DataError(f"data: {len(split.records)} training {batch_format} make no full batch of "
                            f"train.batch_size = {self.cfg.train.batch_size}: lower it or add data")
        return batches

    def context(self, batches: TextBatches) -> EmbeddingContext:
        def labelled() -> Any:
            return batches.all_texts(self.cfg.eval.batch_size)
        return EmbeddingContext(num_train=len(batches.split.records), steps_per_epoch=len(batches),
                                epochs=self.cfg.train.epochs, teacher=self.embedding_source(), teacher_dim=self.dim,
                                num_classes=len(self.data.classes),
                                labelled_batches=labelled if batches.split.labels is not None else None)

    def held_out(self, student: TextEncoder) -> Callable[[], dict[str, float]] | None:
        """The per-evaluation figure: alignment to the teacher on the held-out texts (None without them)."""
        texts = self.data.held.texts
        if not texts or self.held_table is None:
            return None
        tokenize = self.tokenizer_of(student)
        return lambda: alignment_metrics(embed_held_out(student, texts, tokenize, self.cfg.eval.batch_size),
                                         self.held_table.float())

    def train(self, method_cfg: MethodConfig, seed: int, folder: Path) -> dict[str, Any]:
        cls = METHODS.get(method_cfg.name).obj
        student = self.build_student(seed)
        batches = self.batches(student, cls.batch_format)
        frozen = FrozenTeacher(self.teacher) if self.teacher is not None else None
        method = build_method(method_cfg, student=student, teacher=frozen, context=self.context(batches))
        torch.manual_seed(seed)  # whatever ran before (teacher embeddings, a projection fit), training starts alike
        trainer = Trainer(stage_dir=folder, modules={"student": student, "method": method}, objective=method,
                          batches=batches, cfg=self.cfg.train, evaluate=self.held_out(student),
                          frozen=(frozen,) if frozen is not None else (), progress=self.cfg.progress, desc=folder.name)
        started = time.perf_counter()
        held = trainer.fit(resume=self.folder.resume)
        seconds = time.perf_counter() - started
        method.close()
        # the student alone is exported: a method's own heads (LELP's) stay behind
        exported = export_sentence_transformers(student, student.tokenizer, folder / "model")
        model = load_sentence_encoder(exported)  # what is evaluated is what was written
        result = {"model": str(exported), "dim": model.dim, "params": sum(p.numel() for p in model.parameters()),
                  "teacher_embeddings": self.source if cls.needs_teacher else "none", "steps": trainer.step,
                  "train_seconds": seconds, "step_seconds": trainer.step_seconds, "held_out": held}
        evaluation = self.evaluate(model)
        if evaluation is not None:
            result["eval"] = evaluation
        return result

    def evaluate(self, model: TextEncoder) -> dict[str, Any] | None:
        """distill.eval.embeddings on the exported student (and the teacher, when there is one)."""
        e = self.cfg.eval
        if not e.suites:
            return None
        result = evaluate_embeddings(model.encode, self.teacher_encode, suites=e.suites, limits=limits_of(self.cfg),
                                     data_dir=e.data_dir, student_model=model, teacher_model=self.teacher,
                                     batch_size=e.batch_size, progress=self.cfg.progress)
        if self.manifest is not None and "teacher" in result["encoders"]:  # a lookup's speed is not the teacher's
            result["encoders"]["teacher"].update(self.manifest.get("teacher_figures", {}), source="store")
        return result


def embed_held_out(student: TextEncoder, texts: list[str], tokenize: Callable, batch_size: int) -> torch.Tensor:
    """(N, D) student embeddings in eval mode, tokenized as in training (so the figure tracks the loss)."""
    out = []
    with eval_mode(student), torch.no_grad():
        for start in range(0, len(texts), batch_size):
            tokens = tokenize(texts[start:start + batch_size])
            out.append(student(tokens["input_ids"], tokens["attention_mask"]).float())
    return torch.cat(out)


def run(cfg: EmbeddingRecipe, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Every stage of an embedding recipe; returns the summary (also in summary.json)."""
    set_determinism(cfg.seed, cfg.threads)
    folder = Run(cfg, resume=resume, overwrite=overwrite)
    ctx = EmbeddingRun(cfg, folder)
    teacher = ctx.teacher_stage()
    stages: dict[str, dict[str, Any]] = {"teacher": teacher} if teacher else {}
    student_seed = cfg.seed + 1  # the baseline and the method student start from the same init
    methods = [cfg.method]
    if cfg.baseline and not METHODS.get(cfg.method.name).obj.baseline:
        methods.insert(0, baseline_method(TASK))
    for method_cfg in methods:
        name = f"student-{method_cfg.name}"
        stages[name] = folder.stage(name, lambda path, m=method_cfg: ctx.train(m, student_seed, path))
    d = ctx.data
    return folder.write_summary(TASK, stages, table, dataset=cfg.data.label(), warnings=ctx.warnings,
                                data={"format": cfg.data.format, "train_records": len(d.train.records),
                                      "train_texts": len(d.train.texts), "held_out_texts": len(d.held.texts),
                                      "excluded_for_evaluation": d.excluded, "evaluation_texts": len(ctx.suite_texts)})
