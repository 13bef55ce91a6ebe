"""ONNX (onnxruntime) vs PyTorch CPU latency of exported students, side by side, with the max abs difference of
their outputs: the digits quickstart's MLP student (2.4K params), a CIFAR ResNet-20 student (the zoo's; random
init: latency does not depend on the weights) and the MiniLM-L6 sentence encoder (all-minilm-l6-v2, 22.7M).

Every model goes through `distill export`'s own path (distill.export.graphs / distill.export.onnx): the stage
files are rebuilt, exported with the dynamo exporter (opset 18), checked at batch 1 and 32, and timed at
batch 1 and 32 with PyTorch and onnxruntime called alternately (median of --runs), same thread count.

    flock /tmp/heavy.lock .venv/bin/python benchmarks/onnx_export.py   # ~2 min on 2 cores
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

import common
from distill.export.graphs import classification_student, encoder_exportable
from distill.export.onnx import BATCHES, DEFAULT_OPSET, export_graph, latencies, max_abs_diff, onnx_runner, session
from distill.models.io import export_model
from distill.models.registry import count_parameters, create_model

MINILM = Path("~/.cache/distill-assets/all-minilm-l6-v2").expanduser()
IMAGE_MODELS = [("mlp (digits quickstart student)", "mlp", {"hidden": [32]}, 1, 8, 10),
                ("resnet20 (CIFAR student)", "resnet20", {}, 3, 32, 10)]


def image_stage(folder: Path, name: str, kwargs: dict, channels: int, size: int, classes: int) -> Path:
    """A stage folder as a classification run writes it (model.safetensors + model.json), seeded random weights."""
    torch.manual_seed(0)
    model = create_model(name, kwargs, num_classes=classes, in_channels=channels, image_size=size)
    card = {"name": name, "kwargs": kwargs, "num_classes": classes, "in_channels": channels, "image_size": size,
            "classes": [str(i) for i in range(classes)], "mean": [0.5] * channels, "std": [0.25] * channels}
    export_model(model, folder, card)
    return folder


def measure(label: str, ex, path: Path, runs: int) -> dict:
    started = time.perf_counter()
    export_graph(ex, path, DEFAULT_OPSET, label)
    seconds = time.perf_counter() - started
    run_onnx = onnx_runner(session(path))
    return {"model": label, "params": count_parameters(ex.reference), "onnx_bytes": path.stat().st_size,
            "export_seconds": seconds, "max_abs_diff": max_abs_diff(ex, run_onnx),
            "latency_ms": latencies(ex, run_onnx, runs)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=50, help="timed forwards per runtime and batch size")
    p.add_argument("--no-minilm", action="store_true", help="skip the MiniLM encoder")
    p.add_argument("--threads", type=int, default=None, help="torch (and so onnxruntime) intra-op threads "
                   "(default: torch's); 1 is the least disturbed by other jobs on a shared machine")
    args = p.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]  # the machine is shared: how busy it was when the timing started
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, name, kwargs, channels, size, classes in IMAGE_MODELS:
            stage = image_stage(Path(tmp) / name, name, kwargs, channels, size, classes)
            results.append(measure(label, classification_student(stage), Path(tmp) / f"{name}.onnx", args.runs))
            print(f"{label}: done", flush=True)
        if not args.no_minilm:
            if not MINILM.is_dir():
                raise SystemExit(f"{MINILM} is missing (or pass --no-minilm)")
            results.append(measure("all-MiniLM-L6-v2 (encoder + mean pool + normalise)", encoder_exportable(MINILM),
                                   Path(tmp) / "minilm.onnx", args.runs))
    columns = ["model", "params", "max |diff|"]
    for b in BATCHES:
        columns += [f"torch b{b} ms", f"onnx b{b} ms", f"torch/onnx b{b}"]
    rows = []
    for r in results:
        row = [r["model"], f"{r['params']:,}", f"{r['max_abs_diff']:.1e}"]
        for b in map(str, BATCHES):
            t, o = r["latency_ms"]["torch"][b], r["latency_ms"]["onnx"][b]
            row += [f"{t:.3f}", f"{o:.3f}", f"{t / o:.2f}x"]
        rows.append(row)
    print(common.table(columns, rows))
    print(f"median of {args.runs} forwards per cell, PyTorch and onnxruntime alternated, {torch.get_num_threads()} "
          f"thread(s); embedding inputs: 32 English sentences (batch 32) / the longest one (batch 1)")
    command = "flock /tmp/heavy.lock .venv/bin/python benchmarks/onnx_export.py" + (f" --runs {args.runs}" if args.runs != 50 else "") \
        + (f" --threads {args.threads}" if args.threads is not None else "")
    print(f"1-minute load average at the start: {load:.1f} on {os.cpu_count()} cores")
    common.record("onnx_export", {"runs": args.runs, "opset": DEFAULT_OPSET, "threads": torch.get_num_threads(),
                                  "load_average": load, "models": results}, command)


if __name__ == "__main__":
    main()
