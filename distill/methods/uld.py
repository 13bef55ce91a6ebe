"""ULD: Universal Logit Distillation across tokenizers (sorted-probability L1)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from distill.config import option
from distill.losses.uld import merge_span_rows, sorted_l1
from distill.methods.base import METHODS
from distill.methods.cross_tokenizer import CrossTokenizerConfig, CrossTokenizerMethod, SpanChunk, TeacherView


@dataclass(kw_only=True)
class ULDConfig(CrossTokenizerConfig):
    name: str = "uld"
    alignment: Literal["positional", "spans"] = option("positional", help="positional: the i-th predictions of both "
                                                       "sides (the paper); spans: byte-aligned spans, probabilities "
                                                       "merged inside multi-token spans (GOLD's extension)")
    student_temperature: float = option(1.0, min=0.0, min_exclusive=True)
    teacher_temperature: float = option(1.0, min=0.0, min_exclusive=True)
    kd_weight: float = option(1.5, min=0.0, help="the paper's distillation weight (1.5)")
    ce_weight: float = option(1.0, min=0.0, help="the paper's cross-entropy weight (1)")
    normalize: Literal["span", "sequence"] = option("sequence", help="the paper: mean per sequence, then over sequences")


@METHODS.register("uld", config=ULDConfig)
class ULD(CrossTokenizerMethod):
    """ULD: sorted-probability L1 between student and teacher distributions of different vocabularies, + CE (Boizard et al., "Towards Cross-Tokenizer Distillation: the Universal Logit Distillation Loss for LLMs", 2024).

    Per aligned position: sum_i |sort(p_s)_i - sort(p_t)_i|, the smaller vocabulary zero-padded;
    loss = kd_weight * mean + ce_weight * CE (the official code: 1.5 and 1). `alignment: spans`
    compares byte-aligned spans instead, with "bayesian" (chain-rule) merging.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.alignment = "positional" if self.cfg.alignment == "positional" else "bayesian"

    def span_loss(self, student_logits: Tensor, teacher: TeacherView, chunk: SpanChunk) -> Tensor:
        p_s = torch.softmax(student_logits / self.cfg.student_temperature, dim=-1)
        p_t = teacher.probs(self.cfg.teacher_temperature)
        s = merge_span_rows(p_s, chunk.student_span, chunk.student_base, chunk.student_tokens, chunk.n_spans)
        t = merge_span_rows(p_t, chunk.teacher_span, chunk.teacher_base, chunk.teacher_tokens, chunk.n_spans)
        return sorted_l1(s, t)
