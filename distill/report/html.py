"""The HTML report of a run folder: summary table, curves and calibration, as one self-contained
file (plots embedded as PNG). Built only from files in the run folder (summary.json, each
stage's metrics.jsonl), so `distill report runs/<run>/` can rebuild it at any time."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import yaml

from distill.errors import DistillError
from distill.export.table import export_table
from distill.fileio import atomic_write_text

STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:1em 0;font-size:.92em} th,td{padding:.35em .8em;border-bottom:1px solid #eee;text-align:right}
th{background:#f6f6f6} td:first-child,th:first-child,td:nth-child(2),th:nth-child(2){text-align:left}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1em} img{width:100%;border:1px solid #eee}
pre{background:#f8f8f8;padding:1em;overflow:auto;font-size:.85em} .muted{color:#777;font-size:.9em} .warn{color:#a40}
"""


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash
    return out


def load_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise DistillError(f"{run_dir}: no summary.json (is this a finished run folder?)")
    summary = json.loads(summary_path.read_text())
    metrics = {stage: read_metrics(run_dir / stage / "metrics.jsonl") for stage in summary.get("stages", {})}
    return summary, metrics


def figure_png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def curve_plot(metrics: dict[str, list[dict]], kind: str, key: str, title: str, ylabel: str, scale: float = 1.0,
               log: bool = False) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.4, 3.4))
    drawn = False
    for stage, records in metrics.items():
        points = [(r["epoch"], r[key] * scale) for r in records if r.get("kind") == kind and key in r]
        if points:
            ax.plot(*zip(*points), marker="o" if kind == "eval" else None, ms=3, label=stage)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set(title=title, xlabel="epoch", ylabel=ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=.3)
    ax.legend(fontsize=8)
    return figure_png(fig)


MIN_BIN = 5  # a bin of 1-4 samples shows 0% or 100% accuracy: noise, not calibration


def reliability_plot(stages: dict[str, dict]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = {s: r["reliability"] for s, r in stages.items() if "reliability" in r}
    if not tables:
        return None
    fig, ax = plt.subplots(figsize=(5.4, 3.4))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for stage, t in tables.items():
        pts = [(c, a) for c, a, n in zip(t["confidence"], t["accuracy"], t["count"]) if n >= MIN_BIN]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=f"{stage} (ECE {100 * stages[stage]['ece']:.1f}%)")
    ax.set(title=f"Reliability diagram (test set, bins with >= {MIN_BIN} samples)", xlabel="confidence",
           ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.grid(alpha=.3)
    ax.legend(fontsize=8)
    return figure_png(fig)


def summary_table(summary: dict[str, Any]) -> str:
    """The table the run stored in summary.json (written by the task when the run finished)."""
    if "table" not in summary:
        raise DistillError("summary.json has no table (written by an older distill): rerun the recipe with --resume")
    header, rows = summary["table"]["columns"], summary["table"]["rows"]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def build_report(run_dir: str | Path) -> Path:
    """Write `<run_dir>/report.html` and return its path."""
    run_dir = Path(run_dir)
    summary, metrics = load_run(run_dir)
    plots = [curve_plot(metrics, "train", "loss", "Training loss (each stage's own objective)", "loss", log=True),
             curve_plot(metrics, "eval", "accuracy", "Test accuracy", "accuracy (%)", 100),
             curve_plot(metrics, "eval", "agreement", "Top-1 agreement with the teacher", "agreement (%)", 100),
             reliability_plot(summary.get("stages", {}))]
    plots += [p for p in (curve_plot(metrics, "eval", k, t, y) for k, t, y in _extra_curves(metrics)) if p]
    images = "".join(f'<img src="data:image/png;base64,{p}">' for p in plots if p)
    config = html.escape(yaml.safe_dump(summary.get("config", {}), sort_keys=False))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>distill: {html.escape(summary['name'])}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(summary['name'])}</h1>"
            f"<p class='muted'>task {html.escape(summary.get('task', '?'))} · dataset {html.escape(str(summary.get('dataset', '?')))}"
            f" · method {html.escape(str(summary.get('method', '?')))}</p>"
            f"<h2>Results (test set)</h2>{summary_table(summary)}{_notes(summary)}{_export_section(summary)}"
            f"<h2>Curves</h2><div class='grid'>{images}</div>"
            f"<h2>Resolved config</h2><pre>{config}</pre></body></html>")
    out = run_dir / "report.html"
    atomic_write_text(out, page)
    return out


def _extra_curves(metrics: dict[str, list[dict]]) -> list[tuple[str, str, str]]:
    """Extra eval metrics some tasks log (perplexity, divergences)."""
    known = {"perplexity": ("Held-out perplexity", "perplexity"), "kl_to_teacher": ("KL(teacher || student), test", "nats"),
             "proxy_divergence": ("Proxy: KL(teacher || student), held-out", "nats / token"),
             "golden_divergence": ("Golden: KL(oracle || student), held-out", "nats / token"),
             "teacher_cosine": ("Cosine to the teacher's embeddings, held-out", "cosine"),
             "similarity_pearson": ("Pairwise-similarity correlation with the teacher, held-out", "Pearson r")}
    present = {k for records in metrics.values() for r in records if r.get("kind") == "eval" for k in r}
    return [(k, *known[k]) for k in known if k in present]


def _notes(summary: dict[str, Any]) -> str:
    notes = ("accuracy, NLL and ECE on the test split; agree = top-1 agreement with the teacher; size = the exported "
             "model.safetensors; latency = median batch-1 CPU forward; speed-up = teacher latency / model latency.")
    warnings = "".join(f"<p class='warn'>warning: {html.escape(line)}</p>" for line in summary.get("warnings", []))
    return warnings + (f"<p class='muted'>{notes}</p>" if summary.get("task") == "classification" else "")


def _export_section(summary: dict[str, Any]) -> str:
    """The students `distill export` wrote (ONNX): max |ONNX - PyTorch| and both runtimes' latency."""
    if not summary.get("export", {}).get("students"):
        return ""
    header, rows = export_table(summary["export"])
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    e = summary["export"]
    return (f"<h2>Exported ({html.escape(e['format'])})</h2><table><tr>{head}</tr>{body}</table>"
            f"<p class='muted'>max |diff| against PyTorch on {html.escape(next(iter(e['students'].values()))['inputs'])}"
            f"; latency: median of {e['runs']} forwards per batch size, PyTorch and onnxruntime alternated, "
            f"{e['threads']} thread(s); speed-up = PyTorch / ONNX.</p>")
