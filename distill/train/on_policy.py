"""On-policy batches: per step, the completions come from the student, the data, a replay buffer or the teacher.

`OnPolicyBatches` is a batch source like `TokenBatches` over prompt records; the methods (lm_kd,
tip, taid, g_opd) see ordinary batches and never know where the completions came from.

  - with probability lambda a batch's completions are sampled from the *current* student (GKD);
  - seq_kd: the data completions are replaced by teacher samples (sequence-level KD), optionally
    kept only when a verifier accepts them;
  - DistiLLM's adaptive schedule: lambda starts at `adaptive_init` and grows by `adaptive_step`
    whenever the validation loss rises by `adaptive_loss_eps`; with a replay buffer, the share of
    fresh samples decays linearly over training and the rest is drawn from the buffer;
  - PACED: each prompt gets n student rollouts, a verifier gives the pass rate p, and the prompt's
    weight is p^alpha (1 - p)^beta ("sample_weight" in the batch).
Every random choice uses torch's global generator, which checkpoints restore, and the schedule
state (lambda, buffer) is saved with them: a resumed on-policy run repeats the uninterrupted one.
"""
from __future__ import annotations

import importlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from distill.config import option
from distill.data.token_stream import TokenBatches, collate
from distill.errors import ConfigError
from distill.train.generation import SamplingConfig, completion_example, sample_completions


@dataclass(kw_only=True)
class PacedSpec:
    alpha: float = option(1.0, min=0.0, help="w(p) = p^alpha (1 - p)^beta (PACED default alpha = beta = 1)")
    beta: float = option(1.0, min=0.0)
    rollouts: int = option(4, min=1, help="student rollouts per prompt to estimate its pass rate p")


@dataclass(kw_only=True)
class OnPolicySpec:
    """Where completions come from during training (GKD / DistiLLM / PACED)."""

    lmbda: float = option(1.0, min=0.0, max=1.0, help="probability that a batch is sampled from the student")
    seq_kd: bool = option(False, help="replace data completions by teacher generations (sequence-level KD)")
    sampling: SamplingConfig = option(default_factory=SamplingConfig, help="sampling of student / teacher completions")
    replay_buffer: int = option(0, min=0, help="keep this many student samples for reuse (DistiLLM; 0 = off)")
    adaptive: bool = option(False, help="DistiLLM's adaptive off-policy schedule (lambda grows when validation loss rises)")
    adaptive_init: float = option(0.0, min=0.0, max=1.0)
    adaptive_step: float = option(0.1, min=0.0, max=1.0)
    adaptive_loss_eps: float = option(0.1, min=0.0)
    verifier: Optional[str] = option(None, help="module:function(completion_text, answer) -> bool, e.g. "
                                     "distill.data.arithmetic:verify (PACED, verified seq_kd)")
    verify_seq_kd: bool = option(False, help="keep a teacher generation only when the verifier accepts it")
    paced: Optional[PacedSpec] = option(None, help="weight prompts by the student's pass rate (needs a verifier)")


def load_verifier(spec: str | None) -> Callable[[str, Any], bool] | None:
    if spec is None:
        return None
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"on_policy.verifier = {spec!r}: cannot import it ({exc})") from None
    if not callable(fn):
        raise ConfigError(f"on_policy.verifier = {spec!r} is not callable")
    return fn


def paced_weight(pass_rate: float, alpha: float, beta: float) -> float:
    """PACED's Beta kernel: 0 for hopeless (p = 0) and mastered (p = 1) prompts, largest in between."""
    return pass_rate ** alpha * (1.0 - pass_rate) ** beta


class OnPolicyBatches(TokenBatches):
    """Batches of prompt records whose completions are chosen per step (see the module docstring)."""

    def __init__(self, records: list[dict[str, Any]], *, spec: OnPolicySpec, student: nn.Module, teacher: nn.Module | None,
                 tokenizer: Any, vocab_size: int, total_steps: int, **kwargs: Any):
        super().__init__(records, pad_id=tokenizer.pad_token_id, **kwargs)
        self.spec, self.student, self.teacher, self.tokenizer = spec, student, teacher, tokenizer
        self.vocab, self.total_steps = vocab_size, max(total_steps, 1)
        self.verifier = load_verifier(spec.verifier)
        if spec.paced is not None and self.verifier is None:
            raise ConfigError("on_policy.paced needs on_policy.verifier")
        if spec.seq_kd and teacher is None:
            raise ConfigError("on_policy.seq_kd needs a teacher")
        self.lmbda = spec.adaptive_init if spec.adaptive else spec.lmbda
        self.best_val: float | None = None
        self.buffer: deque = deque(maxlen=spec.replay_buffer or None)
        self.step_in_run, self.counts = 0, {"student": 0, "replay": 0, "data": 0}
        self.last_source = "data"

    # ------------------------------------------------------------------ choosing the source

    def choose(self) -> str:
        lam = self.lmbda
        if lam <= 0:
            return "data"
        if lam >= 1 and not self.spec.replay_buffer:
            return "student"
        u = float(torch.rand(()))
        if not self.spec.replay_buffer:
            return "student" if u < lam else "data"
        fresh = lam * (1 - min(self.step_in_run / self.total_steps, 1.0))
        if u < fresh or (u < lam and len(self.buffer) < self.batch_size):
            return "student"
        return "replay" if u < lam else "data"

    def make_batch(self, index: Tensor) -> dict[str, Tensor]:
        records = [self.examples[int(i)] for i in index]
        source = self.choose()
        weights = None
        if source == "student":
            examples, weights = self.student_examples(records)
            self.buffer.extend(examples)
        elif source == "replay":
            picks = torch.randperm(len(self.buffer))[:len(records)].tolist()
            examples = [self.buffer[j] for j in picks]
        else:
            examples = self.data_examples(records)
        self.counts[source] += 1
        self.last_source, self.step_in_run = source, self.step_in_run + 1
        batch = collate(examples, self.pad_id)
        batch["index"] = index
        if weights is not None:
            batch["sample_weight"] = torch.tensor(weights, dtype=torch.float32)
        return batch

    # ------------------------------------------------------------------ the three sources

    def data_examples(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        eos = self.tokenizer.eos_token_id
        if not self.spec.seq_kd:
            return [completion_example(r["prompt"], r["completion"], eos) for r in records]
        generated = self.sample(self.teacher, [r["prompt"] for r in records])
        out = []
        for r, completion in zip(records, generated):
            keep = not self.spec.verify_seq_kd or (self.verifier is not None and self.verifier(self.decode(completion), r.get("answer")))
            out.append(completion_example(r["prompt"], completion if keep else r["completion"], eos))
        return out

    def student_examples(self, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[float] | None]:
        prompts = [r["prompt"] for r in records]
        eos = self.tokenizer.eos_token_id
        if self.spec.paced is None:
            return [completion_example(p, c, eos) for p, c in zip(prompts, self.sample(self.student, prompts))], None
        n = self.spec.paced.rollouts
        rollouts = self.sample(self.student, [p for p in prompts for _ in range(n)])
        examples, weights = [], []
        for i, r in enumerate(records):
            mine = rollouts[i * n:(i + 1) * n]
            rate = sum(bool(self.verifier(self.decode(c), r.get("answer"))) for c in mine) / n
            weights.append(paced_weight(rate, self.spec.paced.alpha, self.spec.paced.beta))
            examples.append(completion_example(r["prompt"], mine[0], eos))
        return examples, weights

    def sample(self, model: nn.Module, prompts: list[list[int]]) -> list[list[int]]:
        return sample_completions(model, prompts, self.spec.sampling, eos_id=self.tokenizer.eos_token_id,
                                  pad_id=self.pad_id, vocab_size=self.vocab)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    # ------------------------------------------------------------------ schedule and state

    def observe_validation(self, metrics: dict[str, Any]) -> None:
        """DistiLLM: raise lambda by a step when the validation loss (NLL) rose by at least eps since the reference."""
        if not self.spec.adaptive or "nll" not in metrics:
            return
        loss = metrics["nll"]
        if self.best_val is None:
            self.best_val = loss
        elif loss >= self.best_val + self.spec.adaptive_loss_eps:
            self.lmbda = min(1.0, self.lmbda + self.spec.adaptive_step)
            self.best_val = loss

    def log_stats(self) -> dict[str, float]:
        total = max(sum(self.counts.values()), 1)
        return {"lambda": self.lmbda, "student_batches": self.counts["student"] / total,
                "replay_batches": self.counts["replay"] / total}

    def state(self) -> dict[str, Any]:
        return {"lmbda": self.lmbda, "best_val": self.best_val, "step": self.step_in_run, "counts": self.counts,
                "buffer": [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in self.buffer]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.lmbda, self.best_val = state.get("lmbda", self.lmbda), state.get("best_val")
        self.step_in_run, self.counts = state.get("step", 0), state.get("counts", self.counts)
        self.buffer = deque(state.get("buffer", []), maxlen=self.spec.replay_buffer or None)
