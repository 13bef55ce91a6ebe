"""The causal-LM recipe schema."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

from distill.config import option
from distill.data.hf_source import HFDataSpec, check_file_or_hf, describe
from distill.methods.base import METHODS, MethodConfig
from distill.models.lora import LoRASpec
from distill.tasks.ranking import RankingOptions
from distill.tasks.sweep import SweepSpec
from distill.train.config import TrainConfig
from distill.train.on_policy import OnPolicySpec

DType = Literal["float32", "bfloat16", "float16"]
# data.hf: per data.format, the alternative column roles (the first present wins) and the optional ones
HF_ROLES = {"text": ([("text",)], ()), "text_prompts": ([("text",)], ()),
            "jsonl": ([("messages",), ("prompt", "completion"), ("text",)], ()),
            "prompts": ([("messages",), ("prompt",)], ("completion", "answer"))}


@dataclass(kw_only=True)
class TeacherLMSpec:
    path: str = option(help="local Hugging Face folder (or a hub id, which needs network access)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option(
        "auto", help="the teacher runs frozen in this dtype; auto: bfloat16 where the CPU runs it natively "
        "(AVX512-BF16 / AMX), else float32 (its cost in KL to the float32 teacher: benchmarks/teacher_dtype.py)")


@dataclass(kw_only=True)
class FromTeacherSpec:
    """A student cut out of the teacher (distill.models.prune): depth (ShortGPT) and/or width (Minitron)."""

    layers: Optional[list[int]] = option(None, help="keep exactly these teacher decoder layers (0-based)")
    num_layers: Optional[int] = option(None, min=1, help="keep this many decoder layers, chosen by `select`")
    select: Literal["block_influence", "uniform"] = option(
        "block_influence", help="block_influence: keep the layers that change the hidden state most on the "
        "calibration blocks (ShortGPT); uniform: evenly spaced, first and last kept")
    hidden_size: Optional[int] = option(None, min=1, help="width: keep this many hidden channels (Minitron importance)")
    intermediate_size: Optional[int] = option(None, min=1, help="width: keep this many MLP channels per layer")
    num_key_value_heads: Optional[int] = option(None, min=1, help="width: keep this many KV groups per layer "
                                                "(with their query heads: the grouped-query ratio is kept)")
    calibration_examples: int = option(32, min=1, help="training blocks the importances are measured on")


@dataclass(kw_only=True)
class StudentInitSpec:
    from_teacher: FromTeacherSpec = option(help="prune the teacher into the student (needs teacher.path)")


@dataclass(kw_only=True)
class StudentLMSpec:
    path: Optional[str] = option(None, help="start from this pretrained model (default: a scaled-down copy of the teacher)")
    architecture: Optional[str] = option(None, help="a model folder whose config (and tokenizer) define a new, randomly "
                                         "initialised student (default: the teacher's config)")
    config: dict[str, Any] = option(default_factory=dict, help="fields replaced in the base config for a new "
                                    "student, e.g. {hidden_size: 256, num_hidden_layers: 4}")
    dtype: DType = option("float32")
    init: Optional[StudentInitSpec] = option(None, help="initialise the student from the teacher's weights, e.g. "
                                             "{from_teacher: {num_layers: 15}}; the run records its size and "
                                             "held-out perplexity right after")
    tokenizer: Optional[str] = option(None, help="the student's tokenizer (default: the student's folder, else the "
                                      "teacher's); another vocabulary than the teacher's needs a cross-tokenizer method")
    lora: Optional[LoRASpec] = option(None, help="train a LoRA adapter on the frozen student (peft), e.g. {r: 16, "
                                      "alpha: 32, target_modules: all-linear}; exports adapter/ and the merged model/")


@dataclass(kw_only=True)
class LMCandidateSpec(StudentLMSpec):
    """A candidate student of `distill students`: a student spec (same tokenizer as the teacher) and a label."""

    label: Optional[str] = option(None, help="the name it is listed under (default: built from config / init / path)")


@dataclass(kw_only=True)
class LMStudents(RankingOptions):
    """`distill students`: candidate students ranked by DisWOT at initialisation, without training."""

    batch_size: int = option(8, min=1, help="training blocks / examples in the one scoring batch, also the latency "
                             "batch; `distill students --batch-size` overrides it")
    max_tokens: int = option(256, min=2, help="token positions of the batch (drawn with the seed) that the "
                             "relation (N x N) and semantic terms are computed over")
    candidates: list[LMCandidateSpec] = option(default_factory=list, help="candidate students, each like the student "
                                               "section (config, init.from_teacher, path, ...) with an optional label")


@dataclass(kw_only=True)
class LMDataSpec:
    format: Literal["text", "jsonl", "prompts", "text_prompts"] = option(
        "text", help="text: packed blocks of plain text; jsonl: prompt/completion, chat or text records; prompts: "
        "JSONL prompt records (+ completion, answer) for on-policy training; text_prompts: (prompt, continuation) "
        "pairs cut from text documents")
    paths: list[str] = option(default_factory=list, help="files, folders or tar archives (text), or JSONL files")
    hf: Optional[HFDataSpec] = option(None, help="a Hugging Face dataset instead of paths: {path, split, columns: "
                                      "{text | prompt, completion | messages}}")
    eval_paths: list[str] = option(default_factory=list, help="separate held-out files (default: a document split of paths)")
    eval_fraction: float = option(0.05, min=0.0, max=0.5, help="share of documents held out when eval_paths is empty")
    column: Optional[int] = option(None, min=0, help="for .tsv sources: keep this tab-separated column only")
    block_size: int = option(256, min=8, help="tokens per packed training block (text)")
    max_length: int = option(512, min=8, help="longest JSONL example, in tokens (longer ones are cut)")
    max_prompt_length: int = option(256, min=1, help="prompts / text_prompts: keep at most the last N prompt tokens")
    prompt_tokens: int = option(32, min=1, help="text_prompts: prompt length in tokens")
    completion_tokens: int = option(64, min=1, help="text_prompts: reference continuation length in tokens")
    max_train_examples: Optional[int] = option(None, min=1, help="use at most this many training blocks / examples "
                                               "(a fixed random subset)")
    max_eval_examples: Optional[int] = option(None, min=1, help="evaluate on at most this many blocks / examples "
                                              "(a fixed random subset)")

    def __post_init__(self) -> None:
        choices, optional = HF_ROLES[self.format]
        check_file_or_hf(self.paths, self.eval_paths, self.hf, [r for c in choices for r in c] + list(optional))

    def label(self) -> str:
        """The data's name in summaries."""
        return ", ".join(self.paths) if self.hf is None else describe(self.hf)


@dataclass(kw_only=True)
class LMEvalSpec:
    batch_size: int = option(8, min=1)
    chunk_size: Optional[int] = option(None, min=1, help="tokens per logit chunk during evaluation")
    min_tokens: int = option(256, min=1, help="refuse to start when the held-out split has fewer valid tokens "
                             "(a perplexity over a handful of tokens is not a result)")


@dataclass(kw_only=True)
class StoreSpec:
    """A teacher-signal store: written by `distill cache`, read by `distill train` instead of a live teacher."""

    path: str = option(help="the store folder")
    k: int = option(32, min=1, help="top-k teacher log-probs kept per token")
    temperature: float = option(1.0, min=0.0, min_exclusive=True, help="capture temperature (losses must use the same)")
    dtype: Literal["float16", "float32"] = option("float16", help="storage dtype of the log-probs")
    examples_per_shard: int = option(256, min=1)
    batch_size: int = option(8, min=1, help="teacher forward batch while caching")
    tail: Literal["uniform", "bucket"] = option("uniform", help="training: spread the tail mass over the other ids, "
                                                "or keep it as one bucket (and collapse the student the same way)")


@dataclass(kw_only=True)
class MonitorSpec:
    """Teacher-hacking monitor: proxy KL(teacher || student) and, with an oracle, golden KL(oracle || student)."""

    oracle: Optional[str] = option(None, help="the oracle model folder (the distribution the teacher approximates)")
    oracle_dtype: Literal["auto", "float32", "bfloat16", "float16"] = option(
        "auto", help="the oracle's dtype; auto resolves as teacher.dtype does, so an oracle that is the teacher "
        "gives the teacher's own divergences")
    max_sequences: int = option(32, min=1, help="held-out sequences the divergences are measured on")
    window: int = option(4, min=2, help="evaluations over which proxy and golden slopes are compared")
    fit_points: int = option(4, min=2, help="no oracle: evaluations the power law is fitted to")
    deviation: float = option(0.1, min=0.0, help="no oracle: relative excess over the power law that flags hacking")


@dataclass(kw_only=True)
class CausalLMRecipe:
    """A causal-LM distillation run: frozen HF teacher, HF student, token-level method."""

    task: Literal["causal_lm"] = "causal_lm"
    name: str = option(help="run name; outputs go to <output_dir>/<name>/")
    seed: int = option(0, min=0)
    output_dir: str = option("runs")
    teacher: Optional[TeacherLMSpec] = option(None, help="the teacher (needed by every method but lm_ce)")
    store: Optional[StoreSpec] = option(None, help="teacher-signal store: `distill cache` writes it, `distill train` "
                                        "then reads it instead of loading the teacher")
    student: StudentLMSpec = option(default_factory=StudentLMSpec)
    data: LMDataSpec = option(help="training and held-out text")
    method: MethodConfig = option(registry=METHODS)
    on_policy: Optional[OnPolicySpec] = option(None, help="sample completions from the student / teacher during "
                                               "training (needs data.format prompts or text_prompts)")
    monitor: Optional[MonitorSpec] = option(None, help="log proxy / golden divergences and flag teacher hacking")
    train: TrainConfig = option(default_factory=lambda: TrainConfig(optimizer="adamw", lr=1e-3, weight_decay=0.01,
                                                                     batch_size=8, epochs=1, warmup_epochs=0.05))
    eval: LMEvalSpec = option(default_factory=LMEvalSpec)
    threads: Optional[int] = option(None, min=1)
    progress: bool = option(True)
    imports: list[str] = option(default_factory=list)
    students: Optional[LMStudents] = option(None, help="candidate students for `distill students` (ranked by DisWOT "
                                            "without training)")
    sweep: Optional[SweepSpec] = option(None, help="`distill sweep`: the keys to search and how (Optuna)")
