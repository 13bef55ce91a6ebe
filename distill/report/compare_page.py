"""The comparison page (`distill report RUN RUN ...`): the winner sentence, the ranking table and the headline
metric against size and latency (distill.report.compare ranks the runs), one self-contained HTML file."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from distill.fileio import atomic_write_text
from distill.report.compare import Headline, Row, comparison, students_of
from distill.report.html import STYLE, figure_png
from distill.report.text import format_text_table, human_count

EXTRA_STYLE = ".lead{font-size:1.1em;background:#f3f8f3;border-left:4px solid #3a7;padding:.7em 1em} " \
              "tr.teacher td{color:#555;font-style:italic} tr.winner td{font-weight:600} td{white-space:nowrap}"


def scatter(head: Headline, students: list[Row], teachers: list[Row], x: str, xlabel: str) -> str | None:
    """The metric against `x` ("params" or "latency_ms", log scale): students labelled, the winner starred,
    baselines hollow, each distinct teacher a dashed reference line (and its own point)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    scale = 100 if head.percent else 1
    points = [r for r in students if r.metric is not None and getattr(r, x)]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for i, t in enumerate(t for t in teachers if t.metric is not None):
        ax.axhline(t.metric * scale, color="0.35", ls="--", lw=1, label=t.label if i < 4 else None)
        if getattr(t, x):
            ax.scatter([getattr(t, x)], [t.metric * scale], marker="s", color="0.35", zorder=3)
    best = next(r for r in students if r.metric is not None)  # the winner (students are ranked)
    for i, r in enumerate(points):
        style = dict(marker="*", s=180, color="#d62") if r is best else \
            dict(marker="o", s=45, facecolors="none", edgecolors="#357") if r.baseline else dict(marker="o", s=45, color="#357")
        ax.scatter([getattr(r, x)], [r.metric * scale], zorder=4, **style)
    ax.set_xscale("log")
    ax.margins(x=0.3)  # room for the labels drawn left of their point
    for i, r in enumerate(points):  # neighbours in rank often share a size: label them on alternate sides
        left = i % 2 == 1 and getattr(r, x) > min(getattr(p, x) for p in points)
        ax.annotate(r.label, (getattr(r, x), r.metric * scale), textcoords="offset points", fontsize=7,
                    xytext=(-6 if left else 6, 3), ha="right" if left else "left")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: human_count(v) if x == "params" else f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel=xlabel, ylabel=head.name + (" (%)" if head.percent else ""),
           title=f"{head.name} vs {'size' if x == 'params' else 'latency'}")
    ax.grid(alpha=.3)
    if teachers:
        ax.legend(fontsize=7, loc="lower right")
    return figure_png(fig)


def _table_html(columns: list[str], rows: list[list[str]], winner: str | None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = ""
    for row in rows:
        cls = " class='teacher'" if row[0] == "ref" else " class='winner'" if row[0] == "1" and winner else ""
        body += f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
    return f"<table id='ranking'><tr>{head}</tr>{body}</table>"


def _runs_html(runs: list[tuple[Path, dict[str, Any]]]) -> str:
    rows = "".join(f"<tr><td>{html.escape(p.name)}</td><td>{html.escape(str(p))}</td>"
                   f"<td>{html.escape(str(s.get('dataset', '?')))}</td><td>{html.escape(str(s.get('method', '?')))}</td>"
                   f"<td>{len(students_of(s))}</td></tr>" for p, s in runs)
    return ("<table><tr><th>run</th><th>folder</th><th>dataset</th><th>method</th><th>students</th></tr>"
            f"{rows}</table>")


def build_comparison(patterns: list[str], out: str | Path = "report.html") -> tuple[Path, dict[str, Any]]:
    """Write the comparison page of the runs matched by `patterns` to `out`; return (path, comparison)."""
    c = comparison(patterns)
    head, students, teachers = c["headline"], c["students"], c["teachers"]
    plots = [scatter(head, students, teachers, "params", "parameters (log)")]
    if head.latency_name:
        plots.append(scatter(head, students, teachers, "latency_ms", head.latency_name + ", log"))
    images = "".join(f'<img src="data:image/png;base64,{p}">' for p in plots if p)
    warn = "".join(f"<p class='warn'>warning: {html.escape(w)}</p>" for w in c["warnings"])
    title = f"distill: {len(c['runs'])} {c['task']} runs compared"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}{EXTRA_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p class='muted'>ranked on {html.escape(head.name)} ({'higher' if head.higher_better else 'lower'} "
            f"is better); the teacher is the reference</p>{warn}"
            f"<p class='lead' id='winner'>{html.escape(c['sentence'])}</p>"
            f"<h2>Ranking</h2>{_table_html(*c['table'], students[0].label if students else None)}"
            f"<h2>{html.escape(head.name)} against size and latency</h2><div class='grid'>{images}</div>"
            f"<h2>Runs</h2>{_runs_html(c['runs'])}</body></html>")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, page)
    return path, c


def format_comparison(c: dict[str, Any]) -> str:
    """The ranking table and the winner sentence for the terminal."""
    columns, rows = c["table"]
    lines = [format_text_table(columns, rows, left=3), "", c["sentence"]]
    return "\n".join(lines + [f"warning: {w}" for w in c["warnings"]])
