"""The comparison report of a sweep folder (`distill sweep`): every trial's values, state and metric,
the metric per epoch of every trial, the metric against each searched key, and the best recipe, as
one self-contained report.html built from the sweep's summary.json and the trials' metrics.jsonl."""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import yaml

from distill.fileio import atomic_write_text
from distill.report.html import STYLE, curve_plot, figure_png, read_metrics
from distill.report.text import format_text_table

PERCENT = ("accuracy", "agreement", "ece", "probe_accuracy")  # figures shown as percentages in the plots


def show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict, bool)) or value is None:
        return yaml.safe_dump(value, default_flow_style=True, width=10 ** 9).strip()
    return str(value)


def state_text(record: dict[str, Any]) -> str:
    if record["state"] == "pruned" and record["epochs"]:
        return f"pruned@{max(map(int, record['epochs']))}"
    return record["state"]


def trial_line(record: dict[str, Any], total: int, metric: str) -> str:
    """The one line printed when a trial ends."""
    value = f"{record['value']:.4f}" if record["value"] is not None else "-"
    seconds = f"{record['seconds']:.0f} s" if record.get("seconds") is not None else "-"
    values = "  ".join(f"{k}={show(v)}" for k, v in record["values"].items())
    note = "  (the recipe's values)" if record["defaults"] else ""
    error = f"  {record['error']}" if record.get("error") else ""
    return (f"{record['folder']} ({record['number'] + 1}/{total})  {state_text(record):<10} {metric} {value}  "
            f"{seconds:>6}  {values}{note}{error}")


def sweep_table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Trial, state, metric, epochs, time, one column per searched key, and a note (best / defaults)."""
    keys = list(summary["space"])
    best = summary["best"]["number"] if summary.get("best") else None
    rows = []
    for t in summary["trials"]:
        note = ", ".join(n for n, on in (("best", t["number"] == best), ("recipe's values", t["defaults"])) if on)
        rows.append([t["folder"], state_text(t), f"{t['value']:.4f}" if t["value"] is not None else "-",
                     str(max(map(int, t["epochs"]))) if t["epochs"] else "-",
                     f"{t['seconds']:.0f} s" if t.get("seconds") is not None else "-",
                     *[show(t["values"].get(k, "-")) for k in keys], note])
    return ["trial", "state", summary["metric"], "epochs", "time", *keys, "note"], rows


def best_line(summary: dict[str, Any]) -> str:
    best, defaults, metric = summary.get("best"), summary.get("defaults"), summary["metric"]
    if best is None:
        return "no trial finished"
    text = f"best: {best['folder']}, {metric} {best['value']:.4f} on {summary['scored_on']}"
    if defaults is not None and defaults["value"] is not None:
        text += f"; the recipe's own values ({defaults['folder']}, {defaults['state']}): {defaults['value']:.4f}"
    return text


def format_sweep(summary: dict[str, Any]) -> str:
    """The trials table and the best trial, for the terminal."""
    columns, rows = sweep_table(summary)
    return format_text_table(columns, rows, left=2) + "\n\n" + best_line(summary)


def param_plot(summary: dict[str, Any], key: str) -> str | None:
    """The metric of every trial against one searched key (pruned trials at their last report)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    space = summary["space"][key]
    scale = 100 if summary["metric"] in PERCENT else 1
    fig, ax = plt.subplots(figsize=(5.4, 3.4))
    labels = [show(c) for c in space.get("choices") or []]
    for state, style in (("complete", dict(color="C0", label="complete")), ("pruned", dict(color="0.6", label="pruned"))):
        pts = [(t["values"][key], t["value"] * scale) for t in summary["trials"]
               if t["state"] == state and t["value"] is not None and key in t["values"]]
        if labels:
            pts = [(labels.index(show(x)), y) for x, y in pts]
        if pts:
            ax.scatter(*zip(*pts), s=18, **style)
    if not ax.collections:
        plt.close(fig)
        return None
    if labels:
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
    elif space.get("log"):
        ax.set_xscale("log")
    ax.set(title=f"{summary['metric']} against {key}", xlabel=key, ylabel=summary["metric"] + (" (%)" if scale == 100 else ""))
    ax.grid(alpha=.3)
    ax.legend(fontsize=8)
    return figure_png(fig)


def build_sweep_report(folder: str | Path) -> Path:
    """Write `<folder>/report.html` from the sweep's summary.json and return its path."""
    folder = Path(folder)
    summary = json.loads((folder / "summary.json").read_text())
    metric = summary["metric"]
    curves = {t["folder"]: read_metrics(folder / t["folder"] / t.get("stage", "") / "metrics.jsonl")
              for t in summary["trials"] if t.get("stage")}
    scale = 100 if metric in PERCENT else 1
    plots = [curve_plot(curves, "eval", metric, f"{metric} per epoch, every trial", metric + (" (%)" if scale == 100 else ""),
                        scale)]
    plots += [param_plot(summary, key) for key in summary["space"]]
    images = "".join(f'<img src="data:image/png;base64,{p}">' for p in plots if p)
    columns, rows = sweep_table(summary)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    space = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v['describe'])}</td></tr>"
                    for k, v in summary["space"].items())
    best = (folder / "best.yaml").read_text() if summary.get("best_recipe") else "(no trial finished)"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>distill sweep: {html.escape(summary['name'])}"
            f"</title><style>{STYLE}</style></head><body><h1>{html.escape(summary['name'])}: sweep</h1>"
            f"<p class='muted'>task {html.escape(summary['task'])} · {html.escape(metric)} "
            f"({summary['direction']}d) on {html.escape(summary['scored_on'])} · {len(summary['trials'])} trials</p>"
            f"<p>{html.escape(best_line(summary))}</p>"
            f"<h2>Trials</h2><table><tr>{head}</tr>{body}</table>"
            f"<p class='muted'>pruned@N: stopped by the pruner after epoch N (its {html.escape(metric)} is the last "
            f"one reported); every trial's run folder is {html.escape(str(folder))}/trial-NNN/</p>"
            f"<h2>Curves</h2><div class='grid'>{images}</div>"
            f"<h2>Search space</h2><table><tr><th>key</th><th>range</th></tr>{space}</table>"
            f"<h2>Best recipe (best.yaml)</h2><pre>{html.escape(best)}</pre></body></html>")
    out = folder / "report.html"
    atomic_write_text(out, page)
    return out
