"""FSDP2 against DDP with 2 CPU processes (gloo) on the ~16M SmolLM2-shaped student: step time and peak
memory per rank, on the same recipe, data and steps.

The student of recipes/tiny-from-store.yaml (hidden 256, 4 layers, 49k tied vocabulary: 12.6M of its
16M parameters are the embedding) trains from a small teacher-signal store of SmolLM2-135M-Instruct
(written once by `distill cache` into runs/bench-fsdp/store, then reused), so the steps cost the
student alone. Each mode runs under torchrun as 2 ranks x 4 blocks of 256 tokens; the launches
alternate (ddp, fsdp, ddp, fsdp, ...) so both see the same load on a shared machine. Per rank:
  - step: median seconds of an optimizer step (the first 2 of each launch are warm-up, dropped),
  - peak RSS in steps: the process's resident memory sampled every 5 ms inside optimizer steps,
    minus its resident memory just before the first step (what training itself adds),
  - state: bytes of this rank's parameters + gradients + optimizer state, from the tensors themselves
    (a DTensor counts its local shard only).

    flock /tmp/heavy.lock .venv/bin/python benchmarks/fsdp.py [--steps 12] [--rounds 2] [--layers 24]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import common

OUT = common.ROOT / "runs" / "bench-fsdp"
TRAIN_BLOCKS, EVAL_BLOCKS = 64, 8
DATA = [f"data.max_train_examples={TRAIN_BLOCKS}", f"data.max_eval_examples={EVAL_BLOCKS}",
        f"data.paths=[{common.ROOT.parent / 'shared/data/text/python-docs-rst.tar.xz'}]"]


def build_store() -> Path:
    """The teacher's top-32 targets on the benchmark's blocks (about a minute of teacher forwards, once)."""
    store = OUT / "store"
    if (store / "manifest.json").is_file():
        return store
    from distill.tasks import load_recipe
    task, cfg = load_recipe(common.ROOT / "recipes" / "smollm2-cache.yaml",
                            [*DATA, f"store.path={store}", f"output_dir={OUT}", "progress=false"])
    task.cache(cfg, overwrite=True)
    return store


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def state_bytes(trainer) -> int:
    """This rank's parameter, gradient and optimizer-state bytes (local shards of DTensors)."""
    from torch.distributed.tensor import DTensor

    def local(t):
        return t.to_local() if isinstance(t, DTensor) else t
    total = 0
    for group in trainer.optimizer.param_groups:
        for p in group["params"]:
            total += 2 * local(p).numel() * p.element_size()  # the parameter and its gradient
            for v in trainer.optimizer.state.get(p, {}).values():
                if hasattr(v, "numel") and v.dim():
                    total += local(v).numel() * v.element_size()
    return total


def worker(mode: str, steps: int, store: str, out: Path, layers: int | None) -> None:
    """One rank of one launch: train, then write this rank's figures to out/<mode>-rank<r>.json."""
    import distill.train.core as core
    from distill.tasks import load_recipe

    times, peak, base, sampling = [], [0], [0], threading.Event()
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            if sampling.is_set():
                peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.005)
    threading.Thread(target=sample, daemon=True).start()
    original, seen = core.Trainer._step, {}

    def step(self, batch):
        if not times:
            base[0] = rss_bytes()
        sampling.set()
        start = time.perf_counter()
        try:
            return original(self, batch)
        finally:
            times.append(time.perf_counter() - start)
            sampling.clear()
            seen["state"] = state_bytes(self)
            seen["params"] = sum(p.numel() for g in self.optimizer.param_groups for p in g["params"])  # global
    core.Trainer._step = step
    task, cfg = load_recipe(common.ROOT / "recipes" / "tiny-from-store.yaml", [
        *DATA, f"store.path={store}", f"output_dir={out}", f"name=tiny-{mode}", "progress=false", "threads=1",
        f"train.distributed={mode}", f"train.max_steps={steps}", "train.epochs=100", "train.batch_size=4",
        "train.eval_every=1000", "train.checkpoint_every=0", "train.log_every=1000",
        *([f"student.config.num_hidden_layers={layers}"] if layers else [])])
    task.run(cfg, overwrite=True)
    stop.set()
    rank = int(os.environ.get("RANK", "0"))
    (out / f"{mode}-rank{rank}.json").write_text(json.dumps({
        "step_s": times[2:], "peak_rss": peak[0], "base_rss": base[0], "state_bytes": seen["state"],
        "params": seen["params"]}))


def launch(mode: str, steps: int, store: Path, out: Path, layers: int | None) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(common.ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           __file__, "--worker", mode, "--steps", str(steps), "--store", str(store), "--out", str(out),
                           *(["--layers", str(layers)] if layers else [])],
                          cwd=common.ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{mode} launch failed:\n{done.stderr[-3000:]}")
    return [json.loads((out / f"{mode}-rank{r}.json").read_text()) for r in range(2)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per launch (the first 2 are warm-up)")
    parser.add_argument("--rounds", type=int, default=2, help="launches per mode, alternating")
    parser.add_argument("--layers", type=int, help="decoder layers of the student (default: the recipe's 4); more "
                        "layers make the sharded part (not the whole root unit) dominate")
    parser.add_argument("--worker", choices=["ddp", "fsdp"], help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.steps, args.store, Path(args.out), args.layers)
    store = build_store()
    runs: dict[str, list[list[dict]]] = {"ddp": [], "fsdp": []}
    for _ in range(args.rounds):
        for mode in runs:
            runs[mode].append(launch(mode, args.steps, store, OUT, args.layers))
            print(f"{mode}: done a launch", flush=True)
    figures, rows = {}, []
    mib = 2 ** 20
    for mode, launches in runs.items():
        for rank in range(2):
            per_rank = [launch_[rank] for launch_ in launches]
            step = statistics.median(t for r in per_rank for t in r["step_s"])
            added = max(r["peak_rss"] - r["base_rss"] for r in per_rank)
            peak = max(r["peak_rss"] for r in per_rank)
            state = per_rank[-1]["state_bytes"]
            figures[f"{mode}_rank{rank}"] = {"step_s": round(step, 3), "peak_rss_mib": round(peak / mib, 1),
                                             "rss_added_in_steps_mib": round(added / mib, 1),
                                             "state_mib": round(state / mib, 1)}
            rows.append([mode, rank, f"{step:.2f}", f"{peak / mib:.0f}", f"{added / mib:.0f}", f"{state / mib:.1f}"])
    figures["fsdp_over_ddp_step_time"] = round(figures["fsdp_rank0"]["step_s"] / figures["ddp_rank0"]["step_s"], 3)
    print(common.table(["mode", "rank", "step s (median)", "peak RSS MiB", "RSS added in steps MiB",
                        "params+grads+optim MiB"], rows))
    print(f"student: {runs['ddp'][0][0]['params'] / 1e6:.1f}M parameters, {args.layers or 4} layers; "
          f"FSDP / DDP step time (rank 0): {figures['fsdp_over_ddp_step_time']:.2f}")
    common.record("fsdp", {"steps_per_launch": args.steps, "rounds": args.rounds, "world_size": 2,
                           "tokens_per_rank_step": 4 * 256, "student": "recipes/tiny-from-store.yaml",
                           "layers": args.layers or 4, "params": runs["ddp"][0][0]["params"],
                           "teacher_source": "store (top-32)", **figures},
                  f"flock /tmp/heavy.lock .venv/bin/python benchmarks/fsdp.py --steps {args.steps} --rounds {args.rounds}"
                  + (f" --layers {args.layers}" if args.layers else ""))


if __name__ == "__main__":
    main()
