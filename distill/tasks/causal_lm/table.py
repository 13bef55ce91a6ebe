"""The summary table of a causal-LM run (printed at the end, stored in summary.json, shown in the report)."""
from __future__ import annotations

from typing import Any

COLUMNS = ["model", "params", "perplexity", "KL(teacher||model)", "train tokens/s", "train time"]
CROSS_COLUMNS = ["model", "params", "bits/byte", "char ppl", "token ppl (own vocab)", "span |dlogp|",
                 "train tokens/s", "train time"]


def _number(r: dict[str, Any], key: str, fmt: str) -> str:
    return format(r[key], fmt) if key in r else "-"


def table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Same-tokenizer runs: perplexity and KL to the teacher; cross-tokenizer runs: bits per byte."""
    stages = summary["stages"].items()
    if any("bits_per_byte" in r for _, r in stages):
        rows = [[name, f"{r['params'] / 1e6:.1f}M", _number(r, "bits_per_byte", ".4f"), _number(r, "char_perplexity", ".3f"),
                 _number(r, "perplexity", ".2f"), _number(r, "span_logp_mae", ".3f"), _number(r, "train_tokens_per_s", ".0f"),
                 f"{r['train_seconds']:.0f} s" if "train_seconds" in r else "-"] for name, r in stages]
        return CROSS_COLUMNS, rows
    rows = []
    for name, r in stages:
        secs = f"{r['train_seconds']:.0f} s" if "train_seconds" in r else "-"
        rows.append([name, f"{r['params'] / 1e6:.1f}M", f"{r['perplexity']:.2f}", _number(r, "kl_to_teacher", ".4f"),
                     _number(r, "train_tokens_per_s", ".0f"), secs])
    return COLUMNS, rows
