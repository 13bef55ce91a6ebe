"""`DistillationConfig`: TrainingArguments + TRL GKDConfig's distillation fields + distill's, checked at construction."""
from __future__ import annotations

from dataclasses import dataclass, field

from distill.config import from_dict
from distill.errors import ConfigError, DistillError
from distill.losses.registry import DIVERGENCES, DivergenceConfig
from distill.losses.signal import TAIL_MODES

try:
    import transformers
except ImportError:  # pragma: no cover - the message is the point
    raise DistillError("distill.hf needs the `transformers` package: pip install 'distill[llm]'") from None

REDUCTIONS = ("batchmean", "sequence_mean", "sum")


class DistillationConfigError(ConfigError, ValueError):
    """A bad DistillationConfig field: a ValueError like TRL's, and a one-line DistillError for distill's CLI."""


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class DistillationConfig(transformers.TrainingArguments):
    """`TrainingArguments` + TRL GKDConfig's distillation fields (same names and defaults) + distill's.

    Every field has `help` metadata, so `transformers.HfArgumentParser` turns them into CLI flags.
    Bad values fail at construction with one line naming the field (`DistillationConfigError`, a
    ValueError).
    """

    _VALID_DICT_FIELDS = transformers.TrainingArguments._VALID_DICT_FIELDS + ["teacher_model_init_kwargs",
                                                                              "divergence_options"]

    # --- TRL GKDConfig's fields, same names, defaults and meanings
    temperature: float = field(default=0.9, metadata=_help(
        "sampling temperature of student / teacher rollouts (GKD's meaning; 0 = greedy). The loss uses loss_temperature"))
    lmbda: float = field(default=0.5, metadata=_help("probability that a micro-batch's completions are sampled "
                                                     "from the current student (on-policy share)"))
    beta: float = field(default=0.5, metadata=_help("generalized JSD interpolation in [0, 1]: 0 = forward KL "
                                                    "KL(p_t || p_s), 1 = reverse KL (divergence 'jsd' only)"))
    max_new_tokens: int = field(default=128, metadata=_help("longest sampled completion"))
    teacher_model_name_or_path: str | None = field(default=None, metadata=_help(
        "teacher to load with AutoModelForCausalLM when the trainer gets no teacher_model"))
    teacher_model_init_kwargs: dict | str | None = field(default=None, metadata=_help(
        "keyword arguments of AutoModelForCausalLM.from_pretrained for a teacher given by name"))
    disable_dropout: bool = field(default=True, metadata=_help("set every dropout of the student to 0"))
    seq_kd: bool = field(default=False, metadata=_help("sequence-level KD: when a batch is not sampled from the "
                                                       "student, train on teacher samples instead of the data"))
    max_length: int | None = field(default=1024, metadata=_help("longest sequence of TRL's chat collator "
                                                                "(used when the data are messages)"))
    # --- TrainingArguments defaults that TRL's configs change, changed the same way (a switched script trains alike)
    learning_rate: float = field(default=2e-5, metadata=_help("initial learning rate (TRL's default)"))
    logging_steps: float = field(default=10, metadata=_help("log every this many steps (a float < 1: a share of "
                                                            "the run; TRL's default)"))
    gradient_checkpointing: bool | None = field(default=None, metadata=_help(
        "deprecated name of activation_checkpointing, which defaults to True here (TRL's default: less memory, "
        "about 20 percent slower; rollouts then run without a KV cache)"))
    bf16: bool | None = field(default=None, metadata=_help("bfloat16 mixed precision; None = True unless fp16 "
                                                           "(TRL's default). The fused loss computes in float32 anyway"))
    # --- distill's
    divergence: str = field(default="jsd", metadata=_help(
        "token divergence, any registered name (`distill methods --divergences`: kl, reverse_kl, jsd, skew_kl, "
        "tvd, ...); the default jsd with beta is TRL GKD's generalized_jsd_loss"))
    divergence_options: dict | str | None = field(default=None, metadata=_help(
        "options of the divergence, e.g. {\"alpha\": 0.1} for skew_kl (jsd takes beta from the beta field)"))
    loss_temperature: float = field(default=1.0, metadata=_help(
        "softmax temperature of the loss, no T^2 factor (GKD's loss uses 1); a store's capture temperature"))
    chunk_size: int | None = field(default=None, metadata=_help(
        "tokens per logit chunk of the fused loss (default: from a 256 MiB budget and the vocabulary)"))
    store: str | None = field(default=None, metadata=_help(
        "teacher-signal store folder (`distill cache`): teacher top-k log-probs instead of a live teacher; "
        "its train split is the default train_dataset; needs lmbda = 0 and seq_kd off"))
    store_tail: str = field(default="uniform", metadata=_help(
        "how a store's tail mass is compared: uniform (spread over the other ids) or bucket (one outcome)"))
    reduction: str = field(default="batchmean", metadata=_help(
        "batchmean: TRL GKD's, divergence summed over the step's valid tokens / their number; "
        "sequence_mean: each sequence's token mean, averaged over the step's sequences; sum: no division"))

    def __post_init__(self) -> None:
        self.bf16 = not self.fp16 if self.bf16 is None else self.bf16
        # TRL's checkpointing default, set on the current name so that neither name given means no deprecation warning
        if self.gradient_checkpointing is None:
            if hasattr(self, "activation_checkpointing"):
                self.activation_checkpointing = True if self.activation_checkpointing is None else self.activation_checkpointing
            else:  # transformers < 5
                self.gradient_checkpointing = True
        super().__post_init__()
        self._check_ranges()
        self.divergence_config()

    def _check_ranges(self) -> None:
        checks = [("lmbda", 0.0 <= self.lmbda <= 1.0, "in [0, 1]"), ("beta", 0.0 <= self.beta <= 1.0, "in [0, 1]"),
                  ("temperature", self.temperature >= 0.0, ">= 0 (0 = greedy sampling)"),
                  ("loss_temperature", self.loss_temperature > 0.0, "> 0"),
                  ("max_new_tokens", self.max_new_tokens >= 1, ">= 1"),
                  ("chunk_size", self.chunk_size is None or self.chunk_size >= 1, ">= 1 or None"),
                  ("reduction", self.reduction in REDUCTIONS, f"one of {', '.join(REDUCTIONS)}"),
                  ("store_tail", self.store_tail in TAIL_MODES, f"one of {', '.join(TAIL_MODES)}")]
        for name, ok, expected in checks:
            if not ok:
                raise DistillationConfigError(f"DistillationConfig.{name} = {getattr(self, name)!r}: must be {expected}")
        if self.store is not None and (self.lmbda > 0 or self.seq_kd):
            raise DistillationConfigError(
                f"DistillationConfig.store is set with lmbda = {self.lmbda}, seq_kd = {self.seq_kd}: a store holds the "
                "teacher on its own sequences only; set lmbda = 0 and seq_kd = False (or use a live teacher)")

    def divergence_config(self) -> DivergenceConfig:
        """The divergence with its options, checked against the registry's schema (bounds included)."""
        options = self.divergence_options or {}
        if not isinstance(options, dict):
            raise DistillationConfigError(f"DistillationConfig.divergence_options = {options!r}: expected a mapping")
        if self.divergence == "jsd":
            if "beta" in options:
                raise DistillationConfigError("DistillationConfig.divergence_options.beta: jsd takes beta from the "
                                              "beta field (GKDConfig's)")
            options = {**options, "beta": self.beta}
        try:
            entry = DIVERGENCES.get(str(self.divergence), field="DistillationConfig.divergence")
            return from_dict(entry.config, {**options, "name": entry.name}, "DistillationConfig.divergence_options")
        except ConfigError as exc:
            raise DistillationConfigError(str(exc)) from None

