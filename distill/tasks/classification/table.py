"""The summary table printed at the end of a classification run (and shown in the report)."""
from __future__ import annotations

from typing import Any

from distill.report.text import human_count

COLUMNS = ("model", "arch", "accuracy", "NLL", "ECE", "agree", "params", "size", "latency", "speed-up", "train time")


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def summary_rows(summary: dict[str, Any]) -> list[list[str]]:
    stages = summary["stages"]
    teacher_latency = stages.get("teacher", {}).get("latency_ms")
    rows = []
    for name, r in stages.items():
        speed = f"{teacher_latency / r['latency_ms']:.1f}x" if teacher_latency and r.get("latency_ms") else "-"
        agree = f"{100 * r['agreement']:.1f}%" if "agreement" in r and name != "teacher" else "-"
        rows.append([name, r.get("arch", "?"), f"{100 * r['accuracy']:.2f}%", f"{r['nll']:.3f}", f"{100 * r['ece']:.2f}%",
                     agree, human_count(r["params"]), human_bytes(r["size_bytes"]), f"{r['latency_ms']:.2f} ms", speed,
                     f"{r['train_seconds']:.0f} s" if "train_seconds" in r else "-"])
    return rows


def table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    rows = summary_rows(summary)
    if any("probe_accuracy" in r for r in summary["stages"].values()):
        probes = [f"{100 * r['probe_accuracy']:.2f}%" if "probe_accuracy" in r else "-" for r in summary["stages"].values()]
        return list(COLUMNS) + ["probe acc"], [row + [p] for row, p in zip(rows, probes)]
    return list(COLUMNS), rows

