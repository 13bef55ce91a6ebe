"""GOLD: TRL's cross-tokenizer distillation (span-merged ULD with the hybrid JSD / sorted-L1 loss)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import Tensor

from distill.config import option
from distill.losses.gold import gold_hybrid
from distill.losses.uld import merge_span_rows, sorted_l1
from distill.methods.base import METHODS
from distill.methods.cross_tokenizer import CrossTokenizerConfig, CrossTokenizerMethod, SpanChunk, TeacherView


@dataclass(kw_only=True)
class GOLDConfig(CrossTokenizerConfig):
    name: str = "gold"
    alignment: Literal["spans", "positional"] = option("spans", help="spans: byte-aligned spans (TRL's use_extended_uld, "
                                                       "which TRL runs for byte-level BPE tokenizers only); positional: "
                                                       "the i-th predictions of both sides (TRL's use_extended_uld: false)")
    merge: Literal["bayesian", "observed"] = option("bayesian", help="bayesian: chain-rule merging of a span's "
                                                    "tokens; observed: TRL's default reading of the rows (not a "
                                                    "chain rule), for like-for-like comparisons with TRL")
    hybrid: bool = option(True, help="JSD on tokens with identical strings in both vocabularies, sorted L1 on the rest")
    beta: float = option(0.5, min=0.0, max=1.0, help="JSD interpolation on matched tokens (0 = forward KL, 1 = reverse)")
    matched_weight: Optional[float] = option(None, min=0.0, help="weight of the matched part (default: K / teacher vocab)")
    unmatched_weight: Optional[float] = option(None, min=0.0, help="weight of the unmatched part (default: 1 - matched)")
    student_temperature: float = option(1.0, min=0.0, min_exclusive=True)
    teacher_temperature: float = option(1.0, min=0.0, min_exclusive=True)
    normalize: Literal["span", "sequence"] = option("sequence", help="TRL: mean per sequence, then over sequences")


@METHODS.register("gold", config=GOLDConfig)
class GOLD(CrossTokenizerMethod):
    """GOLD: byte-aligned spans, probabilities merged inside multi-token spans, hybrid JSD (matched vocabulary) + sorted L1 (the rest) (TRL `trl.experimental.gold`, 2025).

    Follows TRL 1.16.0's `ULDLoss` with use_extended_uld: spans close where both sides' byte
    offsets coincide; merged rows are the base row times the clamped (1e-8) probabilities of the
    span's other tokens, not renormalised; per span w_m JSD_beta(matched columns) + w_u sortedL1
    (other columns), w_m = K / Vt by default; mean per sequence, then over the batch; + ce_weight CE.
    Departure, stated: TRL's default merge reads "observed" rows; ours defaults to "bayesian" (the
    chain rule, TRL's other option) and offers "observed" too.
    """

    @classmethod
    def vocabulary_needs(cls, cfg: GOLDConfig) -> set[str]:
        return {"matched"} if cfg.hybrid else set()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.alignment = self.cfg.merge if self.cfg.alignment == "spans" else "positional"

    def span_loss(self, student_logits: Tensor, teacher: TeacherView, chunk: SpanChunk) -> Tensor:
        p_s = torch.softmax(student_logits / self.cfg.student_temperature, dim=-1)
        p_t = teacher.probs(self.cfg.teacher_temperature)
        s = merge_span_rows(p_s, chunk.student_span, chunk.student_base, chunk.student_tokens, chunk.n_spans)
        t = merge_span_rows(p_t, chunk.teacher_span, chunk.teacher_base, chunk.teacher_tokens, chunk.n_spans)
        if not self.cfg.hybrid:
            return sorted_l1(s, t)
        vocab = chunk.vocab_map
        return gold_hybrid(s, t, vocab.matched_student, vocab.matched_teacher, beta=self.cfg.beta,
                           matched_weight=self.cfg.matched_weight, unmatched_weight=self.cfg.unmatched_weight)
