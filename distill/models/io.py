"""Exporting trained models and loading weights from untrusted files (safetensors or
`torch.load(weights_only=True)` only), with one-line errors when they do not fit."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from distill.errors import CheckpointError
from distill.fileio import atomic_write_text
from distill.train.checkpoint import save_tensors

WEIGHTS = "model.safetensors"
CARD = "model.json"


def export_model(model: nn.Module, folder: Path, card: dict[str, Any]) -> Path:
    """Write `model.safetensors` (weights only) and `model.json` (how to rebuild it) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / WEIGHTS
    tmp = folder / f".{WEIGHTS}.tmp"
    save_tensors(_unshared(model.state_dict()), tmp)
    tmp.replace(path)
    atomic_write_text(folder / CARD, json.dumps(card, indent=2))
    return path


def _unshared(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """safetensors refuses tensors sharing memory (tied weights): store clones."""
    seen: dict[int, str] = {}
    out = {}
    for k, v in state.items():
        ptr = v.data_ptr()
        out[k] = v.clone() if ptr in seen and v.numel() else v
        seen.setdefault(ptr, k)
    return out


def resolve_weights_path(path: str | Path) -> Path:
    """A weights file from a file path, a stage folder (its model.safetensors) or a run folder (the
    export of its last stage, per summary.json: e.g. the model a teacher-training run produced)."""
    p = Path(path)
    for candidate in (p, p / WEIGHTS):
        if candidate.is_file():
            return candidate
    summary = p / "summary.json"
    if summary.is_file():
        stages = list(json.loads(summary.read_text()).get("stages", {}))
        if stages and (p / stages[-1] / WEIGHTS).is_file():
            return p / stages[-1] / WEIGHTS
    raise CheckpointError(f"checkpoint {str(path)!r} does not exist (expected a .safetensors/.pt file, a stage folder "
                          f"with {WEIGHTS}, or a finished run folder)")


def read_state_dict(path: Path) -> dict[str, Tensor]:
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any parse failure of an untrusted file is a user error
        raise CheckpointError(f"checkpoint {str(path)!r} is unreadable: {str(exc).splitlines()[0]}") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} holds no state dict")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, Tensor)}


def load_weights(model: nn.Module, path: str | Path, *, what: str, arch: str) -> Path:
    """Load a checkpoint strictly into `model`; a mismatch is one line naming what differs."""
    file = resolve_weights_path(path)
    state = read_state_dict(file)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise CheckpointError(f"{what} checkpoint {str(file)!r} does not match {what} model {arch!r}: " + _mismatch(missing, unexpected, shapes))
    model.load_state_dict(state)
    return file


def _mismatch(missing: list, unexpected: list, shapes: list) -> str:
    notes = []
    if shapes:
        key, got, want = shapes[0]
        notes.append(f"{len(shapes)} shape mismatch(es), e.g. {key}: checkpoint {got} vs model {want}")
    if missing:
        notes.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
    if unexpected:
        notes.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
    return "; ".join(notes)
