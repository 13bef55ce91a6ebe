"""Runs several causal-LM recipes one after another in the same processes (under torchrun: starting
two processes is the slow part of the FSDP tests, so one launch serves several runs).

    python -m torch.distributed.run --nproc_per_node 2 tests/llm/fsdp_driver.py SPECS.json

SPECS.json: a list of {"recipe": path, "resume": bool, "crash_at": n}; `crash_at` (optional) makes
the n-th optimizer step of that run raise before it starts (on every rank), after the checkpoints
of the steps before it were written: a crash the next `resume` continues from.
"""
import json
import sys
from pathlib import Path

import distill.train.core as core
from distill.tasks import load_recipe


def run_specs(specs: list[dict]) -> None:
    original = core.Trainer._step
    try:
        for spec in specs:
            calls, crash_at = {"n": 0}, spec.get("crash_at")

            def step(self, batch, calls=calls, crash_at=crash_at):
                calls["n"] += 1
                if calls["n"] == crash_at:
                    raise KeyboardInterrupt("simulated crash")
                return original(self, batch)
            core.Trainer._step = step
            task, cfg = load_recipe(spec["recipe"])
            try:
                task.run(cfg, resume=spec.get("resume", False))
            except KeyboardInterrupt:
                if crash_at is None:
                    raise
    finally:
        core.Trainer._step = original


def finish() -> None:
    """Leave without interpreter teardown once the work is done. A gloo / checkpoint thread still
    joinable at teardown has aborted a finished run ("terminate called without an active exception",
    SIGABRT) now and then on 2-core CI machines, failing tests whose runs had completed."""
    import os
    import torch.distributed as dist
    if dist.is_initialized():
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    run_specs(json.loads(Path(sys.argv[1]).read_text()))
    finish()
