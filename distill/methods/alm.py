"""ALM: approximate likelihood matching of aligned chunks across tokenizers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from distill.config import option
from distill.losses.alm import alm
from distill.methods.base import METHODS
from distill.methods.cross_tokenizer import CrossTokenizerConfig, CrossTokenizerMethod, SpanChunk, TeacherView


@dataclass(kw_only=True)
class ALMConfig(CrossTokenizerConfig):
    name: str = "alm"
    temperature: float = option(100.0, min=0.0, min_exclusive=True, help="binarisation temperature tau (tokenkit: 100)")
    difference: Literal["binary_ce", "binary_kl", "reverse_binary_kl"] = option(
        "binary_ce", help="binarised f-divergence (binary_kl: binary_ce minus the teacher's entropy, 0 at a match)")


def span_logp(logits: Tensor, tokens: Tensor, span: Tensor, n_spans: int) -> Tensor:
    """(G,) sum over each span's rows of log softmax(logits)[token]: the span's log-likelihood."""
    token_logp = torch.log_softmax(logits, dim=-1).gather(1, tokens[:, None]).squeeze(1)
    return torch.zeros(n_spans, dtype=token_logp.dtype, device=token_logp.device).index_add(0, span, token_logp)


@METHODS.register("alm", config=ALMConfig)
class ALM(CrossTokenizerMethod):
    """ALM: per aligned chunk, a binarised divergence between the teacher's and the student's likelihood of the chunk's text (Minixhofer et al., "Universal Cross-Tokenizer Distillation via Approximate Likelihood Matching", NeurIPS 2025).

    Chunks are the minimal byte-aligned spans (tokenkit's "unconstrained" alignment); each side's
    chunk log-likelihood is the sum of its tokens' next-token log-probs; the loss is the mean over
    chunks of binary_ce(exp(l_t / tau), exp(l_s / tau)) with tau = 100, as in tokenkit. Pure
    distillation by default (ce_weight 0). Not built: tokenkit's debiasing options
    (append_space, merge_by_space_prob) and its hidden-state term (alm_latents).
    """

    def span_loss(self, student_logits: Tensor, teacher: TeacherView, chunk: SpanChunk) -> Tensor:
        student = span_logp(student_logits, chunk.student_tokens, chunk.student_span, chunk.n_spans)
        token_logp = teacher.token_logp()
        teacher_span = torch.zeros(chunk.n_spans, dtype=token_logp.dtype).index_add(0, chunk.teacher_span, token_logp)
        return alm(student, teacher_span, temperature=self.cfg.temperature, difference=self.cfg.difference)
