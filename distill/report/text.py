"""Plain-text tables for the terminal."""
from __future__ import annotations


def format_text_table(columns: list[str], body: list[list[str]], left: int = 2) -> str:
    """A plain-text table: the first `left` columns left-aligned, the rest right-aligned."""
    rows = [list(columns)] + body
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def human_count(n: float) -> str:
    """A parameter count for tables: 2.4K, 1.25M."""
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K" if n >= 1e3 else str(int(n))
