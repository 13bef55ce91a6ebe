"""The divergence registry: every token divergence is written once, with its options, and found by name.

A divergence is registered next to its math (`distill/losses/divergences.py`, `token.py`) as a
per-position function over log-probabilities, `terms(s_logp, t_logp, **options) -> (...)`, plus
a config dataclass naming its options. Everything else takes the list from here: recipes
(`divergence: {name: jsd, beta: 0.5}`), `lm_kd`, `tip`, evaluation, the fused chunked loss and
`distill methods --divergences`. Adding one is one decorated function in any module of
`distill.losses`:

    @dataclass(kw_only=True)
    class HellingerConfig(DivergenceConfig):
        name: str = "hellinger"

    @register_divergence("hellinger", config=HellingerConfig)
    def hellinger_terms(s_logp, t_logp):
        \"\"\"Squared Hellinger distance 1 - sum_v sqrt(p_s p_t).\"\"\"
        return 1 - ((s_logp + t_logp) / 2).exp().sum(-1)

Working on log-probabilities (not logits) is what lets one function serve a live teacher, a
stored top-k teacher (densified or collapsed to k + 1 buckets) and, later, aligned teachers of
another tokenizer: each hands the pair of distributions over a common support.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from distill.config import option
from distill.losses.logprobs import dense_divergence
from distill.registry import Registry, first_doc_line

DIVERGENCES = Registry("divergence", discover="distill.losses")

Terms = Callable[..., Tensor]  # (s_logp (..., V), t_logp (..., V), **options) -> (...) per position


@dataclass(kw_only=True)
class DivergenceConfig:
    """A divergence and its options, as a recipe writes it: `{name: jsd, beta: 0.5}` (or just `kl`)."""

    name: str = option(help="registered divergence name (see `distill methods --divergences`)")

    def options(self) -> dict[str, Any]:
        """The divergence's keyword options (every field but `name`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "name"}


@dataclass(frozen=True)
class Divergence:
    """A registered divergence.

    Attributes:
        name: its registry name.
        terms: per-position values from log-prob pairs (see the module docstring).
        closed_form: optional `(student_logits, chunk, temperature, **options) -> (per (n,), grad (n, V))`
            with the gradient written out; None means autograd through `terms`.
    """

    name: str
    terms: Terms
    closed_form: Callable[..., tuple[Tensor, Tensor]] | None = None

    def __call__(self, student_logits: Tensor, teacher_logits: Tensor, *, temperature: float = 1.0,
                 mask: Tensor | None = None, reduction: str = "mean", **options: Any) -> Tensor:
        """The dense form on two logit tensors (..., V), with `kl`'s conventions."""
        return dense_divergence(self.terms, student_logits, teacher_logits, temperature=temperature, mask=mask,
                                reduction=reduction, **options)

    def value_and_grad(self, student_logits: Tensor, chunk: Any, temperature: float,
                       **options: Any) -> tuple[Tensor, Tensor]:
        """(per (n,), d per_n / d student_logits (n, V)) for one chunk of a teacher signal."""
        if self.closed_form is not None:
            return self.closed_form(student_logits, chunk, temperature, **options)
        return autograd_value_and_grad(self.terms, student_logits, chunk, temperature, **options)


def autograd_value_and_grad(terms: Terms, student_logits: Tensor, chunk: Any, temperature: float,
                            **options: Any) -> tuple[Tensor, Tensor]:
    """`terms` on the chunk's distribution pair and its gradient by autograd (rows are independent,
    so the gradient of the sum is each row's own gradient)."""
    with torch.enable_grad():
        logits = student_logits.detach().requires_grad_(True)
        s_logp, t_logp = chunk.distributions(logits, temperature)
        per = terms(s_logp, t_logp, **options)
        (grad,) = torch.autograd.grad(per.sum(), logits)
    return per.detach(), grad


def register_divergence(name: str, *, config: type[DivergenceConfig],
                        closed_form: Callable[..., tuple[Tensor, Tensor]] | None = None) -> Callable[[Terms], Terms]:
    """Decorator on a `terms` function: registers it under `name` with its option schema."""
    def add(terms: Terms) -> Terms:
        DIVERGENCES.register(name, config=config, summary=first_doc_line(terms))(Divergence(name, terms, closed_form))
        return terms
    return add


def divergence_config(divergence: str | DivergenceConfig, **options: Any) -> DivergenceConfig:
    """A config object from a name and options (`divergence_config("jsd", beta=0.3)`), or the object itself."""
    if isinstance(divergence, DivergenceConfig):
        return dataclasses.replace(divergence, **options) if options else divergence
    entry = DIVERGENCES.get(str(divergence), field="divergence")
    try:
        return entry.config(name=entry.name, **options)
    except TypeError:
        valid = [f.name for f in dataclasses.fields(entry.config) if f.name != "name"]
        raise ValueError(f"divergence {entry.name!r} takes the options {valid or 'none'}; got {sorted(options)}") from None


def get_divergence(cfg: DivergenceConfig) -> Divergence:
    return DIVERGENCES.get(cfg.name, field="divergence.name").obj

