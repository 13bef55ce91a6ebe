"""ONNX export of a run's students, checked with onnxruntime against PyTorch, with their latencies side by side.

    distill export RUN [--student NAME] [--format onnx] [--out DIR] [--opset N] [--runs N] [--atol X]

Each student stage of a classification or embedding run (see distill.export.graphs for the graphs) is exported
with torch.onnx's dynamo exporter (torch.export; dynamic batch and sequence axes; one file, no external data),
run by onnxruntime at batch 1 and 32 on inputs like the held-out data, and compared with the PyTorch model
(max abs diff over both batches). Latency: median of `runs` forwards at batch 1 and at batch 32, PyTorch
(inference mode) and onnxruntime alternated call by call, so that a busy machine slows both alike; both use
torch's intra-op thread count, and onnxruntime's threads do not spin between runs (see `session`). The
figures go into the run's summary.json under "export" (one entry per student, merged with earlier exports)
and a printed table. Causal-LM runs are refused: their export was not asked for.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import statistics
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from distill.errors import DistillError
from distill.export.graphs import Exportable, check_task, describe_inputs, load_exportable, student_stages
from distill.export.table import BATCHES, export_table
from distill.fileio import atomic_write_text
from distill.report.text import format_text_table

FORMATS = ("onnx",)
DEFAULT_OPSET = 18
NEEDS = "distill export --format onnx needs onnx, onnxruntime and onnxscript: pip install 'distill[onnx]'"


def onnx_modules() -> tuple[Any, Any]:
    """(onnx, onnxruntime), imported on first use; one line naming the extra when missing."""
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401  (torch.onnx's dynamo exporter writes the graph with it)
    except ImportError:
        raise DistillError(NEEDS) from None
    return onnx, onnxruntime


# ----------------------------------------------------------------------------- export and check

def export_graph(ex: Exportable, path: Path, opset: int, name: str) -> Path:
    """Write `ex.graph` as one ONNX file with dynamic axes and `ex.metadata` in its metadata_props."""
    onnx, _ = onnx_modules()
    sample = ex.inputs(2)  # a size-2 sample: torch.export specialises dimensions of size 0 and 1
    dims = tuple({axis: torch.export.Dim(label) for axis, label in axes.items()} for axes in ex.axes.values())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed" notes
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
            warnings.simplefilter("ignore")
            torch.onnx.export(ex.graph, tuple(sample.values()), str(tmp), input_names=list(ex.axes),
                              output_names=[ex.output], opset_version=opset, dynamo=True, dynamic_shapes=dims,
                              external_data=False, verbose=False)
    except Exception as exc:  # the exporter's message is pages long: name the root cause in one line
        tmp.unlink(missing_ok=True)
        raise DistillError(f"ONNX export of {name} failed: {root_cause(exc)}") from exc
    finally:
        quiet.setLevel(level)
    model = onnx.load(str(tmp))
    for key, value in ex.metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(tmp))
    tmp.replace(path)
    return path


def root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def session(path: Path) -> Any:
    """An onnxruntime CPU session with torch's intra-op thread count (so the two are timed alike), its pool
    threads not spinning after a run: timed alternately with PyTorch, spinning threads take the cores from
    PyTorch's next forward (measured: ResNet-20 at 2 threads, PyTorch 51 ms spinning vs 2.0 ms not)."""
    _, ort = onnx_modules()
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_runner(sess: Any) -> Callable[[dict[str, torch.Tensor]], Any]:
    """inputs (name -> tensor) -> the graph's one output as a numpy array."""
    return lambda inputs: sess.run(None, {k: v.numpy() for k, v in inputs.items()})[0]


def max_abs_diff(ex: Exportable, run_onnx: Callable, batches: tuple[int, ...] = BATCHES) -> float:
    """Largest |ONNX - PyTorch| over the outputs of every batch size (the reference model, not the graph)."""
    worst = 0.0
    for batch in batches:
        inputs = ex.inputs(batch)
        with torch.inference_mode():
            expected = ex.reference(*inputs.values()).float()
        got = torch.from_numpy(run_onnx(inputs))
        if got.shape != expected.shape:
            raise DistillError(f"ONNX output of shape {tuple(got.shape)} at batch {batch}; PyTorch gives "
                               f"{tuple(expected.shape)}")
        worst = max(worst, (got - expected).abs().max().item())
    return worst


def paired_latency(first: Callable[[], Any], second: Callable[[], Any], runs: int, warmup: int = 3) -> tuple[float, float]:
    """Median milliseconds of `first()` and of `second()`, called alternately `runs` times each after a warm-up."""
    for _ in range(warmup):
        first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for fn, out in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            out.append(1000 * (time.perf_counter() - start))
    return statistics.median(times[0]), statistics.median(times[1])


def latencies(ex: Exportable, run_onnx: Callable, runs: int) -> dict[str, dict[str, float]]:
    """{"torch": {"1": ms, "32": ms}, "onnx": {...}}: the two runtimes on the same inputs, alternated."""
    out: dict[str, dict[str, float]] = {"torch": {}, "onnx": {}}
    for batch in BATCHES:
        inputs = ex.inputs(batch)

        def torch_forward() -> Any:
            with torch.inference_mode():
                return ex.reference(*inputs.values())
        out["torch"][str(batch)], out["onnx"][str(batch)] = paired_latency(torch_forward, lambda: run_onnx(inputs), runs)
    return out


# ----------------------------------------------------------------------------- a run

def read_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    if not path.is_file():
        raise DistillError(f"{run_dir}: no summary.json (is this a finished run folder?)")
    return json.loads(path.read_text())


def export_student(run_dir: Path, stage: str, task: str, path: Path, opset: int, runs: int) -> dict[str, Any]:
    """Export one stage to `path`, check it and time it; the figures stored under summary["export"]."""
    ex = load_exportable(run_dir, stage, task)
    export_graph(ex, path, opset, f"{run_dir.name}/{stage}")
    run_onnx = onnx_runner(session(path))
    return {"path": str(path), "bytes": path.stat().st_size, "max_abs_diff": max_abs_diff(ex, run_onnx),
            "latency_ms": latencies(ex, run_onnx, runs), "inputs": describe_inputs(task)}


def export_run(run_dir: str | Path, *, student: str | None = None, fmt: str = "onnx", out: str | Path | None = None,
               opset: int = DEFAULT_OPSET, runs: int = 30, atol: float = 1e-4) -> dict[str, Any]:
    """Export the run's students (or the one named `student`); write summary["export"] and return it.

    Files: `<out>/<stage>.onnx` with `out`, else `<run>/<stage>/model.onnx`. Each student's entry has "ok"
    (max_abs_diff <= atol) and its own opset and runs (an earlier export of another student is kept as it was).
    """
    if fmt not in FORMATS:
        raise DistillError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    if runs < 1 or opset < 7 or atol < 0:
        raise DistillError(f"--runs must be >= 1, --opset >= 7 and --atol >= 0 (got {runs}, {opset}, {atol})")
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    task = summary.get("task", "classification")
    check_task(task)
    stages = student_stages(summary, student)
    if not stages:
        raise DistillError(f"{run_dir}: the run has no student stage to export")
    _, ort = onnx_modules()
    export = summary.get("export", {}) if summary.get("export", {}).get("format") == fmt else {}
    export.update(format=fmt, opset=opset, runs=runs, threads=torch.get_num_threads(), torch=torch.__version__,
                  onnxruntime=ort.__version__, atol=atol)
    students = export.setdefault("students", {})
    for stage in stages:
        path = Path(out) / f"{stage}.onnx" if out is not None else run_dir / stage / "model.onnx"
        students[stage] = export_student(run_dir, stage, task, path, opset, runs)
        students[stage].update(ok=students[stage]["max_abs_diff"] <= atol, opset=opset, runs=runs)
    summary["export"] = export
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return export


def format_export(export: dict[str, Any]) -> str:
    columns, rows = export_table(export)
    note = (f"latency: median of {export['runs']} forwards, PyTorch and onnxruntime alternated, "
            f"{export['threads']} thread(s); speed-up = PyTorch / ONNX; opset {export['opset']}")
    return format_text_table(columns, rows, left=2) + "\n" + note
