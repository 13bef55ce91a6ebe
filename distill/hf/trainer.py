"""`DistillationTrainer`: a transformers Trainer with TRL GKDTrainer's constructor, on distill's fused chunked loss.

See `distill.hf` for how a step differs from TRL's. Rollouts happen at a step's first `training_step`
(for all the micro-batches `get_batch_samples` fetched), the loss in `compute_loss`; everything else
(optimizer, schedule, accumulation, checkpoints, logging) is Trainer's.
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from distill.data.token_stream import collate, next_token_targets
from distill.errors import DistillError
from distill.hf.config import DistillationConfig, DistillationConfigError, transformers  # (one clear line if missing)
from distill.hf.data import cut_at_eos, default_collator, open_store, prompt_rows
from distill.losses.fused import fused_linear_divergence
from distill.models.hf import LMBody
from distill.models.lora import effective_weight
from distill.models.teacher import FrozenTeacher
from distill.models.teacher_sources import LiveTokenTeacher, StoredTokenTeacher
from distill.modes import eval_mode, set_dropout
from distill.train.generation import completion_example, left_pad


@contextlib.contextmanager
def captured_output(module: nn.Module) -> Iterator[dict[str, Any]]:
    """A forward hook keeping `module`'s output in the yielded dict under "out" (removed on exit)."""
    store: dict[str, Any] = {}
    handle = module.register_forward_hook(lambda _m, _i, out: store.__setitem__("out", out))
    try:
        yield store
    finally:
        handle.remove()


def last_hidden(output: Any) -> Tensor:
    """The final hidden states (B, T, H) from a decoder's output (a ModelOutput or a tuple)."""
    hidden = getattr(output, "last_hidden_state", None)
    return hidden if hidden is not None else output[0]


# ----------------------------------------------------------------------------- the trainer


class DistillationTrainer(transformers.Trainer):
    """`transformers.Trainer` for token-level distillation, with TRL GKDTrainer's constructor.

    Args:
        model: the student, a causal LM (or a name for AutoModelForCausalLM); with `peft_config`
            it is wrapped in a PEFT adapter.
        teacher_model: the teacher (or a name; default `args.teacher_model_name_or_path`); None
            with `args.store`. It is frozen (no gradient) and stays in eval mode.
        args: a `DistillationConfig`.
        data_collator: default: `TokenCollator` for pre-tokenized examples and store examples,
            TRL's `DataCollatorForChatML` (GKDTrainer's default, needs trl) for chat messages.
        train_dataset: default with `args.store`: the store's train split.
        The remaining arguments are `transformers.Trainer`'s.
    """

    loss_is_scaled_for_ga = True  # compute_loss divides by the step's token count itself

    def __init__(self, model: Any = None, teacher_model: Any = None, args: DistillationConfig | None = None,
                 data_collator: Any = None, train_dataset: Any = None, eval_dataset: Any = None,
                 processing_class: Any = None, compute_metrics: Any = None, callbacks: Any = None,
                 optimizers: tuple = (None, None), preprocess_logits_for_metrics: Any = None, peft_config: Any = None):
        _check_transformers()
        args = DistillationConfig(output_dir="distill_trainer_output") if args is None else args
        if not isinstance(args, DistillationConfig):
            raise DistillationConfigError(f"args: expected a distill.hf.DistillationConfig, got {type(args).__name__}")
        args.remove_unused_columns = False  # the collator needs every column (prompts, messages, teacher rows)
        model = _load_model(model, {}) if isinstance(model, str) else model
        if peft_config is not None:
            model = _peft_model(model, peft_config)
        self.teacher_store = open_store(args) if args.store else None
        if self.teacher_store is not None and train_dataset is None:
            train_dataset = self.teacher_store.examples("train")
        teacher_model = _resolve_teacher(teacher_model, args)
        if teacher_model is not None and teacher_model is model:
            raise DistillationConfigError("teacher_model is the student itself: freezing it would stop training; "
                                          "pass a separate teacher (a copy, if self-distillation is meant)")
        if data_collator is None:
            data_collator = default_collator(train_dataset, processing_class, model, args)
        super().__init__(model=model, args=args, data_collator=data_collator, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, compute_metrics=compute_metrics,
                         callbacks=callbacks, optimizers=optimizers,
                         preprocess_logits_for_metrics=preprocess_logits_for_metrics)
        # older Trainers divide the loss by the accumulation steps unless the model "normalises by
        # num_items_in_batch" itself, which compute_loss here does (newer ones read loss_is_scaled_for_ga)
        self.model_accepts_loss_kwargs = True
        self.divergence = args.divergence_config()
        self.vocab = self._vocabulary(teacher_model)
        self.teacher_model = None
        if teacher_model is not None:
            self.teacher_model = self.accelerator.prepare_model(teacher_model, evaluation_mode=True)
            self.teacher_source = _live_teacher(self.teacher_model)
        else:  # a store: its batches carry the teacher's top-k rows
            manifest = self.teacher_store.manifest
            self.teacher_source = StoredTokenTeacher(float(manifest["temperature"]), args.store_tail, int(manifest["k"]))
        if args.disable_dropout:
            set_dropout(self.model, 0.0)
        self.rollout_counts = {"student": 0, "teacher": 0, "data": 0}
        self._pending_step: tuple[list, Tensor] | None = None

    # ------------------------------------------------------------------ setup

    def _student(self) -> nn.Module:
        """The student without DDP / accelerate wrappers (a PEFT wrapper stays: it forwards attributes)."""
        return self.accelerator.unwrap_model(self.model)

    def _head(self) -> Tensor:
        """(V, H) the weight the fused loss multiplies hidden states by: W, or W + s * B @ A for a LoRA head."""
        head = self._student().get_output_embeddings()
        if getattr(getattr(head, "base_layer", head), "bias", None) is not None:
            raise DistillationConfigError(f"{type(self._student()).__name__} has a bias on its output layer; the "
                                          "fused loss supports bias-free LM heads only")
        return effective_weight(head)

    def _vocabulary(self, teacher: nn.Module | None) -> int:
        """The number of logits compared: the student head's rows (a store's vocabulary when smaller)."""
        rows = self._head().shape[0]
        if teacher is not None and teacher.get_output_embeddings().weight.shape[0] != rows:
            raise DistillationConfigError(f"the student has {rows} output rows but the teacher "
                                          f"{teacher.get_output_embeddings().weight.shape[0]}: token-level distillation "
                                          "needs one vocabulary (distill's cross-tokenizer methods handle different ones)")
        if self.teacher_store is not None:
            stored = int(self.teacher_store.manifest.get("vocab_size", rows))
            if stored > rows:
                raise DistillationConfigError(f"store {self.args.store!r} has a vocabulary of {stored}, "
                                              f"the student only {rows} rows")
            return stored
        return rows

    # ------------------------------------------------------------------ rollouts (before the step)

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: torch.device) -> tuple[list, Any]:
        """The step's micro-batches and a normaliser tensor that `training_step` fills once it rolled them out.

        Not rolled out here: on resume, Trainer restores the RNG state only after this call, and the
        choices must come from the restored generator to repeat the uninterrupted run.
        """
        batches, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        self._pending_step = (batches, torch.zeros((), device=device))
        return batches, self._pending_step[1]

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Tensor:
        """Trainer's step; the step's first call rolls out all its micro-batches (in place) and fills the normaliser."""
        if self._pending_step is not None:
            batches, normalizer = self._pending_step
            self._pending_step = None
            normalizer.copy_(self.roll_out(batches))
        return super().training_step(model, inputs, num_items_in_batch)

    def roll_out(self, batches: list[dict[str, Any]]) -> Tensor:
        """Choose every micro-batch's completions (replacing each dict's contents), then return the step's
        loss normaliser over all of them (and all processes)."""
        for batch in batches:
            rolled = self._rollout(batch)
            if rolled is not batch:  # the Trainer loop holds these very dicts
                batch.clear()
                batch.update(rolled)
        return self._step_normalizer(batches, batches[0]["input_ids"].device)

    def _rollout(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """GKD's choice for one micro-batch: student samples with probability lmbda, else teacher samples
        if seq_kd, else the data. torch's generator, so a resumed run repeats the choices."""
        if self.args.lmbda > 0 and float(torch.rand(())) < self.args.lmbda:
            source, model = "student", self.model
        elif self.args.seq_kd:
            source, model = "teacher", self.teacher_model
        else:
            self.rollout_counts["data"] += 1
            return inputs
        self.rollout_counts[source] += 1
        return self._generate(self.accelerator.unwrap_model(model), self._prepare_inputs(inputs))

    @torch.no_grad()
    def _generate(self, model: nn.Module, inputs: dict[str, Any]) -> dict[str, Tensor]:
        """Prompts + sampled completions, re-collated like the data (prompt labels -100, nothing after EOS)."""
        pad, eos = self._special_ids()
        prompts = prompt_rows(inputs)
        device = inputs["input_ids"].device
        ids, mask = (t.to(device) for t in left_pad(prompts, pad))
        greedy = self.args.temperature == 0
        sampling = {} if greedy else {"temperature": self.args.temperature, "top_k": 0, "top_p": 1.0}
        with eval_mode(model):  # the sample comes from the model itself, not from a dropout mask of it
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=self.args.max_new_tokens,
                                 do_sample=not greedy, pad_token_id=pad, eos_token_id=sorted(eos) or None,
                                 use_cache=not _checkpointing(self.args), **sampling)
        completions = [cut_at_eos(row, eos) for row in out[:, ids.shape[1]:].tolist()]
        examples = [completion_example(p, c, eos_id=-1) for p, c in zip(prompts, completions)]
        return {k: v.to(device) for k, v in collate(examples, pad).items()}

    def _special_ids(self) -> tuple[int, set[int]]:
        """(pad id, end-of-sequence ids): the student's generation config first (Llama 3 lists several), then the tokenizer."""
        student = self._student()
        eos = getattr(getattr(student, "generation_config", None), "eos_token_id", None)
        tokenizer = self.processing_class
        if eos is None and tokenizer is not None:
            eos = tokenizer.eos_token_id
        eos_ids = set(eos) if isinstance(eos, (list, tuple)) else ({eos} if eos is not None else set())
        pad = getattr(tokenizer, "pad_token_id", None)
        if pad is None:
            pad = student.config.pad_token_id if student.config.pad_token_id is not None else min(eos_ids, default=0)
        return int(pad), eos_ids

    def _step_normalizer(self, batches: list[dict[str, Any]], device: torch.device) -> Tensor:
        """What compute_loss divides by: the step's valid tokens (batchmean), sequences (sequence_mean) or 1 (sum)."""
        if self.args.reduction == "sum":
            return torch.ones((), device=device)
        counts = [next_token_targets(b)[1] for b in batches]
        if self.args.reduction == "sequence_mean":
            total = sum(m.any(dim=1).sum() for m in counts)
        else:
            total = sum(m.sum() for m in counts)
        total = torch.as_tensor(total, device=device).float()
        if self.args.world_size > 1:
            total = self.accelerator.gather(total.reshape(1)).sum()
        return total

    # ------------------------------------------------------------------ the loss

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """The divergence over the valid next-token positions, fused and chunked (no B x T x V logits).

        In training `num_items_in_batch` is the step normaliser of `get_batch_samples`; elsewhere
        (evaluation) the batch's own count is used.
        """
        _, mask = next_token_targets(inputs)
        with self.accelerator.autocast():  # the teacher body in the run's mixed precision, like the student's forward
            teacher = self.teacher_source.signal(inputs, mask)  # first: its temporaries go before the student's exist
        hidden = self._student_hidden(model, inputs)[:, :-1][mask]
        if not len(hidden):
            loss = hidden.sum() * 0.0  # keeps the graph (DDP needs every rank to run backward)
            return (loss, {"divergence": loss.detach()}) if return_outputs else loss
        normalizer = num_items_in_batch if (model.training and num_items_in_batch is not None) else None
        normalizer, weights = self._normalizer(mask, normalizer)
        out = fused_linear_divergence(hidden, self._head(), teacher, divergence=self.divergence,
                                      temperature=self.args.loss_temperature, chunk_size=self.args.chunk_size,
                                      normalizer=normalizer, vocab_size=self.vocab, weights=weights)
        loss = out.loss
        if model.training and self.args.world_size > 1:
            loss = loss * self.args.world_size  # the normaliser is global and DDP averages gradients over processes
        return (loss, {"divergence": out.divergence}) if return_outputs else loss

    def _normalizer(self, mask: Tensor, step_total: Any) -> tuple[Tensor, Tensor | None]:
        """(divisor, per-token weights or None) for this micro-batch; `step_total` from the step when training."""
        if self.args.reduction == "sum":
            return torch.ones((), device=mask.device), None
        if self.args.reduction == "sequence_mean":
            per_row = mask.sum(dim=1, keepdim=True).clamp_min(1).float()
            weights = (1.0 / per_row).expand_as(mask)[mask]
            total = mask.any(dim=1).sum() if step_total is None else step_total
            return torch.as_tensor(total, device=mask.device).float().clamp_min(1), weights
        total = mask.sum() if step_total is None else step_total
        return torch.as_tensor(total, device=mask.device).float().clamp_min(1), None

    def _student_hidden(self, model: nn.Module, inputs: dict[str, Any]) -> Tensor:
        """(B, T, H) final hidden states, by a forward hook on the decoder during the (wrapped) model's forward,
        so DDP / accelerate hooks run; the model's own head is asked for the last position only."""
        student = self._student()
        extra = {"logits_to_keep": 1} if "logits_to_keep" in _forward_parameters(student) else {}
        with captured_output(student.get_decoder()) as tap:
            model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"), use_cache=False, **extra)
        return last_hidden(tap["out"])

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Trainer's log, plus the share of micro-batches sampled from the student and the teacher so far."""
        total = sum(self.rollout_counts.values())
        if total and "loss" in logs:
            logs = {**logs, "student_batches": self.rollout_counts["student"] / total,
                    "teacher_batches": self.rollout_counts["teacher"] / total}
        super().log(logs, *args, **kwargs)


# ----------------------------------------------------------------------------- helpers


def _check_transformers() -> None:
    """The rollouts and the step normaliser hook `Trainer.get_batch_samples(iterator, n, device)`: without it
    training would silently run off-policy with per-micro-batch means."""
    method = getattr(transformers.Trainer, "get_batch_samples", None)
    if method is None or "device" not in inspect.signature(method).parameters:
        raise DistillError(f"distill.hf needs a newer transformers (Trainer.get_batch_samples(..., device)); "
                           f"this is {transformers.__version__}: pip install -U transformers")


def _forward_parameters(model: nn.Module) -> set[str]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(inspect.signature(base.forward).parameters)


def _load_model(name: str, kwargs: dict[str, Any]) -> nn.Module:
    kwargs = dict(kwargs)
    dtype = kwargs.get("dtype")
    if isinstance(dtype, str) and dtype != "auto":
        kwargs["dtype"] = getattr(torch, dtype)
    return transformers.AutoModelForCausalLM.from_pretrained(name, **kwargs)


def _peft_model(model: nn.Module, peft_config: Any) -> nn.Module:
    try:
        import peft
    except ImportError:
        raise DistillError("peft_config needs the `peft` package: pip install 'distill[lora]'") from None
    return peft.get_peft_model(model, peft_config)


def _resolve_teacher(teacher: Any, args: DistillationConfig) -> nn.Module | None:
    """The teacher model: given, loaded by name (argument or args.teacher_model_name_or_path), or None with a store."""
    teacher = teacher if teacher is not None else args.teacher_model_name_or_path
    if args.teacher_model_init_kwargs is not None and not isinstance(teacher, str):
        raise DistillationConfigError("DistillationConfig.teacher_model_init_kwargs is set but the teacher is already "
                                      "a model (the kwargs are for loading it by name)")
    if isinstance(teacher, str):
        teacher = _load_model(teacher, args.teacher_model_init_kwargs or {})
    if teacher is None and args.store is None:
        raise DistillationConfigError("DistillationTrainer needs a teacher: teacher_model, "
                                      "DistillationConfig.teacher_model_name_or_path or DistillationConfig.store")
    if teacher is not None and args.store is not None:
        raise DistillationConfigError("DistillationTrainer got both a teacher model and DistillationConfig.store: "
                                      "pass one teacher source")
    return teacher


def _live_teacher(teacher: nn.Module) -> LiveTokenTeacher:
    """The frozen teacher's decoder (eval mode whatever a parent's .train() says) as a hidden-state signal source."""
    teacher.eval()
    return LiveTokenTeacher(FrozenTeacher(LMBody(teacher)))




def _checkpointing(args: DistillationConfig) -> bool:
    """Whether activation checkpointing is on (transformers 5 renamed gradient_checkpointing; the old name warns)."""
    value = getattr(args, "activation_checkpointing", None)
    return bool(args.gradient_checkpointing if value is None else value)
