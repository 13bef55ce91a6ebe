"""The summary table of a causal-LM run (printed at the end, stored in summary.json, shown in the report)."""
from __future__ import annotations

from typing import Any

COLUMNS = ["model", "params", "perplexity", "KL(teacher||model)", "train tokens/s", "train time"]


def table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    rows = []
    for name, r in summary["stages"].items():
        kl = f"{r['kl_to_teacher']:.4f}" if "kl_to_teacher" in r else "-"
        speed = f"{r['train_tokens_per_s']:.0f}" if "train_tokens_per_s" in r else "-"
        secs = f"{r['train_seconds']:.0f} s" if "train_seconds" in r else "-"
        rows.append([name, f"{r['params'] / 1e6:.1f}M", f"{r['perplexity']:.2f}", kl, speed, secs])
    return COLUMNS, rows
