"""Atomic checkpoints in safetensors + JSON (no pickle anywhere).

A checkpoint is a folder `checkpoints/step-<N>/` holding
  - `weights.safetensors`: every trainable module's state, keys "<module>/<name>",
  - `optimizer.safetensors`: the optimizer's tensors, keys "<param index>/<field>",
  - `state.json`: step, data position, RNG states, optimizer hyper-parameters, method state.
It is written into a temporary folder, each file fsynced, then renamed into place; only then is
`checkpoints/latest.json` replaced (temp file, fsync, rename). A crash at any point leaves the
previous `latest.json` pointing at a complete checkpoint.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from distill.errors import CheckpointError
from distill.fileio import atomic_write_text, fsync_dir

LATEST = "latest.json"


def save_tensors(tensors: dict[str, Tensor], path: Path) -> None:
    """safetensors file of contiguous CPU tensors, fsynced; tensors sharing memory (tied embeddings)
    are stored as separate copies, since safetensors refuses shared storage."""
    out, seen = {}, set()
    for k, v in tensors.items():
        v = v.detach().cpu()
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape)) if v.numel() else None
        out[k] = v.clone().contiguous() if key in seen else v.contiguous()
        seen.add(key)
    save_file(out, str(path))
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch CPU and CUDA, numpy, python) as JSON-able data."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state().tolist(),
             "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
             "python": _to_json(random.getstate())}
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    random.setstate(_from_json(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _to_json(value: Any) -> Any:
    return [_to_json(v) for v in value] if isinstance(value, (tuple, list)) else value


def _from_json(value: Any) -> Any:
    return tuple(_from_json(v) for v in value) if isinstance(value, list) else value


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (for safetensors) and plain JSON data."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, fields in sd["state"].items():
        for key, value in fields.items():
            if isinstance(value, Tensor):
                tensors[f"{index}/{key}"] = value
            else:
                scalars[f"{index}/{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for flat, value in list(tensors.items()) + list(meta["scalars"].items()):
        index, key = flat.split("/", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def write_checkpoint(root: Path, step: int, weights: dict[str, Tensor], optimizer: torch.optim.Optimizer,
                     state: dict[str, Any], keep: int = 2, stage: str = "") -> Path:
    """Write checkpoint `step` atomically under `root` and point latest.json at it."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-step-{step:08d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_tensors(weights, tmp / "weights.safetensors")
    crash_point("DISTILL_TEST_KILL_IN_CHECKPOINT", step, stage)
    opt_tensors, opt_meta = optimizer_to_flat(optimizer)
    save_tensors(opt_tensors, tmp / "optimizer.safetensors")
    atomic_write_text(tmp / "state.json", json.dumps({**state, "optimizer": opt_meta, "step": step}))
    return publish(root, tmp, step, keep)


def publish(root: Path, tmp: Path, step: int, keep: int) -> Path:
    """Rename the complete folder `tmp` to `root/step-<step>`, then point latest.json at it and prune old ones."""
    final = root / f"step-{step:08d}"
    fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(root)
    atomic_write_text(root / LATEST, json.dumps({"step": step, "dir": final.name}))
    _prune(root, keep, final.name)
    return final


def _prune(root: Path, keep: int, newest: str) -> None:
    done = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in done[:-keep]:
        if old.name != newest:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-step-*"):
        shutil.rmtree(stale, ignore_errors=True)


def latest_checkpoint(root: Path) -> Path | None:
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    try:
        name = json.loads(pointer.read_text())["dir"]
    except (ValueError, KeyError):
        raise CheckpointError(f"{pointer}: unreadable checkpoint pointer") from None
    path = root / name
    if not (path / "state.json").is_file():
        raise CheckpointError(f"{pointer} points at {name}, which is incomplete or missing")
    return path


def read_checkpoint(path: Path) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Any]]:
    """(weights, optimizer tensors, state) of one checkpoint folder."""
    if (path / "dcp").is_dir():
        raise CheckpointError(f"checkpoint {path} was written with train.distributed: fsdp (torch.distributed.checkpoint): "
                              "resume it with distributed: fsdp")
    try:
        state = json.loads((path / "state.json").read_text())
        return load_file(str(path / "weights.safetensors")), load_file(str(path / "optimizer.safetensors")), state
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable: {exc}") from None


def crash_point(variable: str, step: int, stage: str = "") -> None:
    """Test instrumentation: SIGKILL this process when $variable is "<step>" or "<stage>:<step>".

    Used by tests/train/test_resume.py to crash a real run at a chosen point; unset, it does nothing.
    """
    wanted = os.environ.get(variable)
    if wanted is not None and wanted in (str(step), f"{stage}:{step}"):
        os.kill(os.getpid(), 9)
