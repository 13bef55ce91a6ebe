"""The summary table of an embedding run (printed at the end, stored in summary.json, shown in the report).

Rows: the teacher, each student, and per student its asymmetric row "<student> q / teacher d"
(student-encoded queries against teacher-encoded documents: LEAF's claim). Figures come from the
end-of-run evaluation each student stage stores under "eval" (distill.eval.embeddings), the held-out
alignment under "held_out"; a figure that was not measured is "-".
"""
from __future__ import annotations

from typing import Any

from distill.report.text import human_count


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _evals(stages: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["eval"] for name, r in stages.items() if name != "teacher" and r.get("eval")]


def _retrieval(result: dict[str, Any] | None, suite: str, pair: str) -> str:
    figures = (result or {}).get("retrieval", {}).get(suite, {}).get("pairs", {}).get(pair, {})
    return _pct(figures.get("ndcg@10"))


def _row(name: str, figures: dict[str, Any], result: dict[str, Any] | None, who: str, shown: dict[str, Any],
         held: dict[str, Any], seconds: float | None) -> list[str]:
    """One model's cells; `shown` says which evaluation columns the table has (transfer, retrieval suites)."""
    encoder = (result or {}).get("encoders", {}).get(who, {})
    params = figures.get("params", encoder.get("params"))
    cells = [name, str(figures.get("dim", encoder.get("dim", "-"))), human_count(params) if params else "-"]
    if shown["evaluated"]:
        speed = encoder.get("sentences_per_s")
        cells.append(f"{speed:.1f}" if speed else "-")
    if shown["transfer"]:
        cells.append(_pct((result or {}).get("transfer", {}).get(who, {}).get("mean")))
    cells += [_retrieval(result, s, f"{who}/{who}") for s in shown["suites"]]
    cells += [f"{held['teacher_cosine']:.3f}" if "teacher_cosine" in held else "-",
              f"{held['similarity_pearson']:.3f}" if "similarity_pearson" in held else "-",
              f"{seconds:.0f} s" if seconds is not None else "-"]
    return cells


def table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    stages = summary["stages"]
    evals = _evals(stages)
    shown = {"evaluated": bool(evals), "transfer": any("transfer" in e for e in evals),
             "suites": list(dict.fromkeys(s for e in evals for s in e.get("retrieval", {})))}
    columns = (["model", "dim", "params"] + ["sent/s"] * shown["evaluated"] + ["transfer acc"] * shown["transfer"]
               + [f"{s} nDCG@10" for s in shown["suites"]] + ["held-out cos", "sim r", "train time"])
    teacher_eval = next((e for e in evals if "teacher" in e.get("encoders", {})), None)
    rows = [_row("teacher", stages["teacher"], teacher_eval, "teacher", shown, {}, None)] if "teacher" in stages else []
    for name, r in stages.items():
        if name == "teacher":
            continue
        rows.append(_row(name, r, r.get("eval"), "student", shown, r.get("held_out", {}), r.get("train_seconds")))
        if r.get("eval") and "teacher" in r["eval"].get("encoders", {}):
            asym = [_retrieval(r["eval"], s, "student/teacher") for s in shown["suites"]]
            blank = 3 + shown["evaluated"] + shown["transfer"]
            rows.append([f"{name} q / teacher d"] + ["-"] * (blank - 1) + asym + ["-", "-", "-"])
    return columns, rows
