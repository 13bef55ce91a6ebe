"""The comparison report of several runs of one task (`distill report runs/a runs/b ...`, or a glob): every
student of every run ranked on the task's headline metric, the teacher as the reference line, one sentence
naming the winner and its margins, and the metric against size and latency, as one self-contained HTML page
built from the runs' summary.json files. This module reads the runs and ranks them; the page and the
plots are distill.report.compare_page.

    task            headline metric                                    better   latency (x of the latency plot)
    classification  test accuracy                                      higher   batch-1 CPU forward (latency_ms)
    causal_lm       held-out bits per byte if measured, else perplexity  lower    - (not measured by the runs)
    embedding       nDCG@10, mean over the retrieval suites every        higher   ms per sentence at the evaluation
                    student was evaluated on; else the held-out cosine           batch (1000 / sentences_per_s)
                    to the teacher (the teacher is 1 by definition)

Margins of the winner: the share of its own run's teacher's metric it keeps (the ratio for lower-better
metrics), its speed-up over that teacher (teacher latency / student latency; the parameter ratio when no
latency is measured), and its difference to the baseline student (the task's label-only method, e.g. CE-only;
the one of its own run, else the best baseline) and to the runner-up, in points for percentages.
"""
from __future__ import annotations

import glob
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from distill.errors import DistillError
from distill.methods.base import method_names
from distill.report.text import human_count


@dataclass
class Row:
    """One model of one run: a student (ranked) or a teacher (the reference)."""

    run: str
    stage: str
    metric: float | None
    params: float | None
    latency_ms: float | None
    teacher: bool = False
    baseline: bool = False
    label: str = ""
    shared_by: tuple[str, ...] = ()  # a teacher row: the runs whose teacher it is


@dataclass(frozen=True)
class Headline:
    """How a task's runs are ranked: the metric's name, direction, display and where each figure is read."""

    name: str
    higher_better: bool
    percent: bool  # a fraction shown as a percentage; margins in points
    latency_name: str | None  # x label of the latency plot; None: the runs measure no latency
    rows: Callable[[dict[str, Any], str], list[Row]]


# ----------------------------------------------------------------------------- the runs

def expand_runs(patterns: list[str]) -> list[Path]:
    """Run folders from paths and globs, in the order given (a glob's matches sorted), each once."""
    found: list[Path] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = [Path(m) for m in sorted(glob.glob(pattern)) if (Path(m) / "summary.json").is_file()]
            if not matches:
                raise DistillError(f"{pattern}: matches no run folder (a folder with summary.json)")
        else:
            if not (Path(pattern) / "summary.json").is_file():  # a quoted glob skips such entries; a path must be a run
                raise DistillError(f"{pattern}: no summary.json (is this a finished run folder? quote a glob, "
                                   "'runs/*', to skip what is not a run)")
            matches = [Path(pattern)]
        found += [m for m in matches if m.resolve() not in {f.resolve() for f in found}]
    return found


def read_runs(paths: list[Path]) -> tuple[str, list[tuple[Path, dict[str, Any]]]]:
    """(task, [(folder, summary)]); refuses runs of different tasks and folders without stages."""
    runs = []
    for path in paths:
        summary = json.loads((path / "summary.json").read_text())
        if not isinstance(summary.get("stages"), dict):
            raise DistillError(f"{path}: summary.json has no stages (a sweep folder? its own report is in it)")
        runs.append((path, summary))
    tasks = {}
    for path, summary in runs:
        tasks.setdefault(summary.get("task", "classification"), []).append(str(path))
    if len(tasks) > 1:
        raise DistillError("distill report: runs of different tasks cannot be compared ("
                           + "; ".join(f"{t}: {', '.join(p)}" for t, p in tasks.items()) + ")")
    return next(iter(tasks)), runs


def baseline_names(task: str) -> set[str]:
    """The task's label-only methods (the registry marks them `baseline = True`)."""
    return set(method_names(task, baseline=True))


def students_of(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(n, r) for n, r in summary["stages"].items() if n.startswith("student-") and n != "student-init"]


# ----------------------------------------------------------------------------- headline metric per task

def classification_rows(summary: dict[str, Any], run: str) -> list[Row]:
    return [Row(run, name, r.get("accuracy"), r.get("params"), r.get("latency_ms"), teacher=name == "teacher")
            for name, r in summary["stages"].items() if name == "teacher" or (name, r) in students_of(summary)]


def lm_rows(key: str) -> Callable[[dict[str, Any], str], list[Row]]:
    def rows(summary: dict[str, Any], run: str) -> list[Row]:
        return [Row(run, name, r.get(key), r.get("params"), None, teacher=name == "teacher")
                for name, r in summary["stages"].items() if name == "teacher" or (name, r) in students_of(summary)]
    return rows


def _ndcg(evaluation: dict[str, Any], suites: list[str], pair: str) -> float | None:
    values = [evaluation["retrieval"][s]["pairs"].get(pair, {}).get("ndcg@10") for s in suites]
    return sum(values) / len(values) if values and None not in values else None


def embedding_rows(suites: list[str]) -> Callable[[dict[str, Any], str], list[Row]]:
    """nDCG@10 over `suites` (student/student pairs; the teacher's teacher/teacher pair from any evaluation),
    or, with no suites, the held-out cosine to the teacher (1 for the teacher)."""
    def rows(summary: dict[str, Any], run: str) -> list[Row]:
        out, teacher_eval = [], None
        for name, r in students_of(summary):
            e = r.get("eval") or {}
            speed = e.get("encoders", {}).get("student", {}).get("sentences_per_s")
            metric = _ndcg(e, suites, "student/student") if suites and e else None
            if not suites:
                metric = r.get("held_out", {}).get("teacher_cosine")
            out.append(Row(run, name, metric, r.get("params"), 1000 / speed if speed else None))
            teacher_eval = teacher_eval or (e if "teacher" in e.get("encoders", {}) else None)
        if "teacher" in summary["stages"]:
            t = (teacher_eval or {}).get("encoders", {}).get("teacher", {})
            metric = (_ndcg(teacher_eval, suites, "teacher/teacher") if teacher_eval else None) if suites else 1.0
            params = summary["stages"]["teacher"].get("params", t.get("params"))
            speed = t.get("sentences_per_s")
            out.insert(0, Row(run, "teacher", metric, params, 1000 / speed if speed else None, teacher=True))
        return out
    return rows


def common_suites(runs: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    """Retrieval suites every evaluated embedding student has (so their means are over the same suites)."""
    sets = [set((r.get("eval") or {}).get("retrieval", {})) for _, s in runs for _, r in students_of(s) if r.get("eval")]
    return sorted(set.intersection(*sets)) if sets else []


def headline(task: str, runs: list[tuple[Path, dict[str, Any]]]) -> Headline:
    if task == "classification":
        return Headline("accuracy", True, True, "latency, batch 1, CPU (ms)", classification_rows)
    if task == "causal_lm":
        bpb = any("bits_per_byte" in r for _, s in runs for r in s["stages"].values())
        return Headline("bits per byte" if bpb else "perplexity", False, False, None,
                        lm_rows("bits_per_byte" if bpb else "perplexity"))
    if task == "embedding":
        suites = common_suites(runs)
        name = f"nDCG@10 ({', '.join(suites)})" if suites else "held-out cosine to the teacher"
        return Headline(name, True, True, "ms per sentence (evaluation batch)", embedding_rows(suites))
    raise DistillError(f"distill report: task {task!r} has no headline metric to compare runs on")


# ----------------------------------------------------------------------------- ranking and margins

def collect(task: str, runs: list[tuple[Path, dict[str, Any]]]) -> tuple[Headline, list[Row], list[Row]]:
    """(headline, students ranked best first, the distinct teachers (`share_teachers`)), labels unique."""
    head = headline(task, runs)
    names = [p.name for p, _ in runs]
    runs_named = [(str(p) if names.count(p.name) > 1 else p.name, s) for p, s in runs]
    base = baseline_names(task)
    rows = [row for run, s in runs_named for row in head.rows(s, run)]
    for row in rows:
        row.baseline = not row.teacher and row.stage.removeprefix("student-") in base
    students, teachers = [r for r in rows if not r.teacher], [r for r in rows if r.teacher]
    for group in (students, teachers):
        stages = [r.stage for r in group]
        for r in group:
            r.label = r.stage if stages.count(r.stage) == 1 else f"{r.stage} ({r.run})"
    sign = -1 if head.higher_better else 1
    students.sort(key=lambda r: (r.metric is None, sign * (r.metric or 0.0)))
    return head, students, share_teachers(teachers, len(runs))


def share_teachers(teachers: list[Row], runs: int) -> list[Row]:
    """One reference row per distinct teacher: runs whose teachers have the same metric and size (the same
    checkpoint, or the same training) share a row, whose latency is the median of those runs' measurements
    (one run measured on a busy machine does not make its students look thousands of times faster)."""
    groups: dict[tuple, list[Row]] = {}
    for t in teachers:
        groups.setdefault((t.metric, t.params), []).append(t)
    shown = []
    for group in groups.values():
        first, measured = group[0], [t.latency_ms for t in group if t.latency_ms]
        names = f"all {runs} runs" if len(group) == runs > 2 else ", ".join(t.run for t in group)
        shown.append(Row(names, first.stage, first.metric, first.params,
                         statistics.median(measured) if measured else None, teacher=True,
                         label="teacher" if len(groups) == 1 else first.label, shared_by=tuple(t.run for t in group)))
    return shown


def teacher_of(row: Row, teachers: list[Row]) -> Row | None:
    """The (shared) teacher of the student's own run, else the first teacher (a run without one: a store, say)."""
    return next((t for t in teachers if row.run in t.shared_by), teachers[0] if teachers else None)


def show(head: Headline, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f} %" if head.percent else f"{value:.4f}" if value < 10 else f"{value:.2f}"


def versus(head: Headline, a: float, b: float, who: str) -> str:
    """'+1.2 points over <who>' for percentages, else '0.21 lower than <who>' (lower is better for those)."""
    if head.percent:
        return f"{100 * (a - b):+.1f} points over {who}"
    return f"{abs(a - b):.3g} {'lower' if a < b else 'higher'} than {who}"


def speed_phrase(row: Row, teacher: Row) -> str | None:
    if row.latency_ms and teacher.latency_ms:
        return f"{teacher.latency_ms / row.latency_ms:.1f}x speed-up"
    if row.params and teacher.params:
        return f"{teacher.params / row.params:.1f}x fewer parameters"
    return None


def winner_sentence(head: Headline, students: list[Row], teachers: list[Row]) -> str:
    """The winner and its margins, e.g. 'student-dkd keeps 97.1 % of the teacher's accuracy at 12.0x
    speed-up, +1.2 points over the baseline student-ce, +0.4 points over the runner-up student-kd.'"""
    ranked = [r for r in students if r.metric is not None]
    if not ranked:
        return f"No student has a {head.name} figure."
    win, teacher = ranked[0], teacher_of(ranked[0], teachers)
    parts = [f"{win.label} ranks first with {head.name} {show(head, win.metric)}"]
    if teacher is not None and teacher.metric:
        if head.higher_better:
            keep = f"keeps {100 * win.metric / teacher.metric:.1f} % of the teacher's {head.name}"
        else:
            keep = f"is at {win.metric / teacher.metric:.2f}x the teacher's {head.name}"
        speed = speed_phrase(win, teacher)
        parts = [f"{win.label} {keep} ({show(head, win.metric)} vs {show(head, teacher.metric)})"
                 + (f" at {speed}" if speed else "")]
    bases = [r for r in ranked if r.baseline and r is not win]
    base = next((b for b in bases if b.run == win.run), bases[0] if bases else None)
    if base is not None:
        parts.append(versus(head, win.metric, base.metric, f"the baseline {base.label}"))
    runner = next((r for r in ranked[1:] if r is not base), None)
    if runner is not None:
        parts.append(versus(head, win.metric, runner.metric, f"the runner-up {runner.label}"))
    return ", ".join(parts) + "."


# ----------------------------------------------------------------------------- the table and the comparison

def ranking_table(head: Headline, students: list[Row], teachers: list[Row]) -> tuple[list[str], list[list[str]]]:
    """The teachers (reference, unranked) then the students best first, with the margins of each; "vs baseline"
    is against the baseline of the student's own run, else the best baseline (as in the winner sentence)."""
    columns = ["rank", "model", "run", head.name, "of teacher", "vs baseline", "params", "latency", "speed-up"]
    rows = [["ref", t.stage, t.run, show(head, t.metric), "-", "-", human_count(t.params) if t.params else "-",
             f"{t.latency_ms:.3f} ms" if t.latency_ms else "-", "1.0x" if t.latency_ms else "-"]
            for t in teachers]
    ranked_bases = [r for r in students if r.baseline and r.metric is not None]  # best first
    bases = {r.run: r for r in reversed(ranked_bases)}
    for rank, r in enumerate(students, 1):
        t = teacher_of(r, teachers)
        ratio = "-"
        if r.metric is not None and t is not None and t.metric:
            ratio = f"{100 * r.metric / t.metric:.1f} %" if head.higher_better else f"{r.metric / t.metric:.2f}x"
        base = bases.get(r.run, ranked_bases[0] if ranked_bases else None)
        delta = "-" if base is None or base is r or r.metric is None else (
            f"{100 * (r.metric - base.metric):+.1f} pt" if head.percent else f"{r.metric - base.metric:+.3g}")
        speed = f"{t.latency_ms / r.latency_ms:.1f}x" if t is not None and t.latency_ms and r.latency_ms else "-"
        rows.append([str(rank), r.stage + (" (baseline)" if r.baseline else ""), r.run, show(head, r.metric), ratio,
                     delta, human_count(r.params) if r.params else "-",
                     f"{r.latency_ms:.3f} ms" if r.latency_ms else "-", speed])
    return columns, rows


def comparison(patterns: list[str]) -> dict[str, Any]:
    """Everything the page and the terminal show: task, headline, ranking, sentence, warnings."""
    task, runs = read_runs(expand_runs(patterns))
    head, students, teachers = collect(task, runs)
    datasets = sorted({str(s.get("dataset", "?")) for _, s in runs})
    warnings = [f"the runs use different datasets ({', '.join(datasets)}): their figures are not comparable"] \
        if len(datasets) > 1 else []
    return {"task": task, "runs": runs, "headline": head, "students": students, "teachers": teachers,
            "sentence": winner_sentence(head, students, teachers), "table": ranking_table(head, students, teachers),
            "warnings": warnings}
