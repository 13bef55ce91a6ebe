"""Fully sharded data parallelism (FSDP2, `torch.distributed.fsdp.fully_shard`) for `train.distributed: fsdp`.

Sharding: every decoder layer of a causal LM is one FSDP unit and the body around it (input
embeddings, final norm, output head; a tied head and input embedding are one parameter) is the
root unit. Each rank keeps 1 / world of every parameter, of its gradient and of the optimizer
state; a unit's full weights exist only while it runs (all-gathered before, freed after).

The head: FSDP2 leaves the root unit gathered from its forward until its backward (it would be
needed again at once), so once the body has run, `LMBody.head_weight` is the full (V, H) weight
the fused loss multiplies by, and the head gradient the loss produces lands in the gathered
parameter that FSDP reduce-scatters after backward, with the embedding's. Reading the head before
any forward (evaluation does) gathers the root explicitly (`gather_root`); `release` frees it
again afterwards.

Gradients: FSDP2 reduce-scatters the *mean* over ranks, as DDP all-reduces it, so the Trainer's
global-token weights (count_i / global count x world size) carry over unchanged and a sharded step
equals the DDP step and the single-process step up to float rounding. Gradient accumulation
reduce-scatters after every micro-batch (no `no_sync`): skipping it would keep full-size
gradients, which is what FSDP is there to avoid.

Checkpoints (`checkpoints/step-<N>/`): `dcp/` holds the model and optimizer state in
torch.distributed.checkpoint format (every rank writes its shards, rank 0 the metadata) and
`state.json` (rank 0) the data position, RNG states and method state. DCP records each tensor with
its global shape, so a checkpoint written by W ranks resumes on any other number of ranks, one
included (the plain module, no process group). All ranks write into a temporary folder that rank
0 then renames and points latest.json at, as in `distill.train.checkpoint`; ranks must see the
same filesystem (one machine, or a shared mount).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from distill.errors import CheckpointError, ConfigError
from distill.fileio import atomic_write_text
from distill.train.checkpoint import crash_point, publish
from distill.train.config import FSDPConfig

DCP_DIR = "dcp"


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


# ----------------------------------------------------------------------------- sharding

def decoder_layers(lm: nn.Module) -> nn.ModuleList:
    """The repeated blocks of a Hugging Face causal LM (`model.layers` of Llama / Qwen / Gemma / Mistral, `h` of GPT-2)."""
    decoder = lm.get_decoder()
    for name in ("layers", "h", "blocks"):
        blocks = getattr(decoder, name, None)
        if isinstance(blocks, nn.ModuleList):
            return blocks
    raise ConfigError(f"train.distributed: fsdp: cannot find the decoder layers of {type(lm).__name__} "
                      "(looked for layers, h, blocks): use distributed: ddp")


def shard_lm(body: nn.Module, cfg: FSDPConfig, *, frozen: bool = False) -> nn.Module:
    """Shard an `LMBody` in place over all ranks: each decoder layer, then the body as root; returns it.

    `frozen` (the teacher): its weights are gathered in their own dtype whatever cfg.mixed_precision says.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    mesh = init_device_mesh(device, (dist.get_world_size(),))
    bf16 = cfg.mixed_precision and not frozen
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None,
                                  reduce_dtype=torch.float32 if bf16 else None)
    for layer in decoder_layers(body.lm):
        fully_shard(layer, mesh=mesh, reshard_after_forward=cfg.reshard_after_forward, mp_policy=policy)
    fully_shard(body, mesh=mesh, mp_policy=policy)
    return body


def is_sharded(module: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule
    return isinstance(module, FSDPModule)


def gather_root(module: nn.Module, weight: torch.Tensor) -> bool:
    """All-gather the root unit of a sharded `module` when `weight` (one of its parameters) is still a shard;
    True when it gathered. Collective: every rank reaches it at the same point (same code, same data order)."""
    from torch.distributed.tensor import DTensor
    if not (is_sharded(module) and isinstance(weight, DTensor)):
        return False
    module.unshard()
    return True


def release(module: nn.Module) -> None:
    """Free the gathered weights of every FSDP unit in `module` (after evaluation: FSDP keeps the root gathered)."""
    from torch.distributed.fsdp import FSDPModule
    for unit in module.modules():
        if isinstance(unit, FSDPModule):
            unit.reshard()


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state on rank 0 (CPU tensors), {} on the other ranks; collective.

    A tied parameter is kept under its first name only (the gathered copies no longer share memory,
    so `save_pretrained` would store a tied head and embedding twice)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    first = {name for name, _ in model.named_parameters()}
    tied = {name for name, _ in model.named_parameters(remove_duplicate=False)} - first
    return {k: v for k, v in state.items() if k not in tied}


# ----------------------------------------------------------------------------- checkpoints

def write_dcp_checkpoint(root: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                         state: dict[str, Any], keep: int = 2, stage: str = "") -> Path:
    """Write checkpoint `step` under `root` from every rank; rank 0 publishes it (latest.json). Collective."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    rank, world = _world()
    root, final = Path(root), Path(root) / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"  # one name on every rank (a pid would differ)
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    _barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optim_state}, checkpoint_id=str(tmp / DCP_DIR))
    crash_point("DISTILL_TEST_KILL_IN_CHECKPOINT", step, stage)
    if rank == 0:
        atomic_write_text(tmp / "state.json", json.dumps({**state, "step": step, "format": "dcp", "world_size": world}))
        publish(root, tmp, step, keep)
    _barrier()  # no rank runs ahead (or crashes on purpose) before the checkpoint is published
    return final


def read_dcp_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Load a DCP checkpoint into `model` and `optimizer` (whatever world size wrote it); returns its state.json."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    try:
        state = json.loads((Path(path) / "state.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable: {exc}") from None
    if state.get("format") != "dcp":
        raise CheckpointError(f"checkpoint {path} was written with train.distributed: ddp (safetensors): resume it "
                              "with distributed: ddp")
    model_state, optim_state = get_state_dict(model, optimizer)  # allocates the optimizer state to load into
    try:
        dcp.load({"model": model_state, "optimizer": optim_state}, checkpoint_id=str(Path(path) / DCP_DIR))
        set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optim_state)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} does not match this run: {str(exc).splitlines()[0]}") from None
    return state
