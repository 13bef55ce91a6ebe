"""Shared benchmark plumbing: provenance, JSON-lines results, printed tables."""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))


def commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "distill"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "os": platform.platform()}


def record(name: str, figures: dict[str, Any], command: str) -> dict[str, Any]:
    """Append one result line to benchmarks/results/<name>.jsonl and return it."""
    import torch
    line = {"benchmark": name, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": commit(), "torch": torch.__version__, "machine": machine(), "command": command, "figures": figures}
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f"{name}.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")
    return line


def all_results(name: str) -> list[dict[str, Any]]:
    """Every line of benchmarks/results/<name>.jsonl, oldest first ([] when there is no file)."""
    path = RESULTS / f"{name}.jsonl"
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def latest_result(name: str, key: str | None = None) -> dict[str, Any] | None:
    """The last line of benchmarks/results/<name>.jsonl (with `key` in its figures, for benchmarks with
    sections), or None."""
    return next((x for x in reversed(all_results(name)) if key is None or key in x["figures"]), None)


def student_stage(summary: dict[str, Any]) -> dict[str, Any]:
    """The student stage's figures in a run's summary.json (the stage named student-<method>; the
    student-init row, the student right after student.init.from_teacher, is not it)."""
    return next(v for k, v in summary["stages"].items() if k.startswith("student-") and k != "student-init")


def table(columns: list[str], rows: list[list[Any]]) -> str:
    from distill.report.text import format_text_table
    return format_text_table(columns, [[str(c) for c in r] for r in rows], left=1)


def mean_std(values: list[float]) -> tuple[float, float]:
    import statistics
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def method_summary(figures: dict[str, Any]) -> list[tuple[str, list[tuple[float, float, float]], float]]:
    """cls_methods figures -> per method: [(mean %, std %, mean - KD mean) per dataset], mean train seconds."""
    datasets = list(figures)
    rows = []
    for method in figures[datasets[0]]["methods"]:
        cells, secs = [], []
        for d in datasets:
            runs = figures[d]["methods"][method]
            mean, std = mean_std([100 * r["accuracy"] for r in runs])
            kd_mean = mean_std([100 * r["accuracy"] for r in figures[d]["methods"].get("kd", runs)])[0]
            cells.append((mean, std, mean - kd_mean))
            secs += [r["train_seconds"] for r in runs]
        rows.append((method, cells, mean_std(secs)[0]))
    return rows


def recipe_document(out_dir: Path, name: str, recipe: dict[str, Any]) -> dict[str, Any]:
    """`recipe` named `name`, writing its run under out_dir, without progress bars."""
    return {**recipe, "name": name, "output_dir": str(out_dir), "progress": False}


def write_recipe(out_dir: Path, name: str, recipe: dict[str, Any]) -> Path:
    """<out_dir>/recipes/<name>.yaml: `recipe_document(out_dir, name, recipe)`."""
    import yaml
    path = Path(out_dir) / "recipes" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe_document(out_dir, name, recipe)))
    return path


def finished_with(out_dir: Path, name: str, recipe: dict[str, Any]) -> bool:
    """Whether run `name` under out_dir finished from this very recipe (a changed recipe is trained again,
    so a benchmark never reports a run of other settings)."""
    import yaml
    folder, path = Path(out_dir) / name, Path(out_dir) / "recipes" / f"{name}.yaml"
    if not ((folder / "summary.json").is_file() and (folder / "peak_rss.json").is_file() and path.is_file()):
        return False
    wanted = json.loads(json.dumps(recipe_document(out_dir, name, recipe)))  # yaml's view: tuples become lists
    return yaml.safe_load(path.read_text()) == wanted


def train_subprocess(out_dir: Path, name: str, recipe: dict[str, Any]) -> dict[str, Any]:
    """`distill train` of `recipe` in its own process (so its peak RSS is the run's own); reuses a run finished
    from the same recipe.

    Returns the run's summary with "peak_rss_bytes" added.
    """
    folder = Path(out_dir) / name
    summary = folder / "summary.json"
    if not finished_with(out_dir, name, recipe):
        path = write_recipe(out_dir, name, recipe)
        wrapper = ("import sys\nfrom distill.cli import main\ncode = main(sys.argv[1:])\n"
                   "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
                   "print('PEAK_KB', peak)\nsys.exit(code)")
        out = subprocess.run([sys.executable, "-c", wrapper, "train", str(path), "--overwrite"], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"{name} failed: {out.stderr[-2000:]}")
        peak = int(out.stdout.split("PEAK_KB")[-1].split()[0]) * 1024
        (folder / "peak_rss.json").write_text(json.dumps({"peak_rss_bytes": peak}))
    result = json.loads(summary.read_text())
    result["peak_rss_bytes"] = json.loads((folder / "peak_rss.json").read_text())["peak_rss_bytes"]
    return result
