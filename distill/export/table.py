"""The table of a run's exported students (summary.json "export"), printed by `distill export` and shown in
the run's report.html; kept apart from the exporter so that the report reads it without torch.onnx."""
from __future__ import annotations

from pathlib import Path
from typing import Any

BATCHES = (1, 32)  # the batch sizes the exporter checks and times


def export_table(export: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per student: file size, max |ONNX - PyTorch|, and PyTorch / ONNX latency at batch 1 and 32."""
    columns = ["student", "file", "size", "max |diff|"]
    for batch in BATCHES:
        columns += [f"torch b{batch}", f"onnx b{batch}", f"speed-up b{batch}"]
    rows = []
    for stage, r in export["students"].items():
        file = Path(r["path"])
        row = [stage, f"{file.parent.name}/{file.name}", f"{r['bytes'] / 1024:.1f} KB" if r["bytes"] < 2 ** 20 else
               f"{r['bytes'] / 2 ** 20:.1f} MB", f"{r['max_abs_diff']:.1e}" + ("" if r.get("ok", True) else " (!)")]
        for batch in map(str, BATCHES):
            t, o = r["latency_ms"]["torch"][batch], r["latency_ms"]["onnx"][batch]
            row += [f"{t:.3f} ms", f"{o:.3f} ms", f"{t / o:.2f}x"]
        rows.append(row)
    return columns, rows
