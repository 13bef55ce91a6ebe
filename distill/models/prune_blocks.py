"""A shallower classification student initialised from its teacher: keep some of each stage's blocks.

The teacher and the student are the same family at two depths (CIFAR ResNet-56 -> ResNet-20,
WRN-40-2 -> WRN-16-2): every stage is an `nn.Sequential` of residual blocks, and the student's
stage has fewer of them. A stage's first block changes the shape (stride, width) and is always
kept; of the others, which all map a tensor to one of the same shape, the student keeps the ones
with the highest block influence on calibration images (ShortGPT, "ShortGPT: Layers in Large
Language Models are More Redundant Than You Expect", Men et al., 2024, applied to CNN blocks):

    BI_b = 1 - mean over images of cos(flatten(x_in), flatten(x_out))

measured with forward hooks on the teacher's blocks (`select: uniform` keeps evenly spaced ones
instead). Every other tensor (stem, classifier, batch-norm buffers) is copied by name. A student
whose tensors cannot all be found in the teacher with the same shape is refused with one line:
width changes are not supported for the classification zoo.
"""
from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from distill.errors import ConfigError
from distill.modes import eval_mode


def block_stages(student: nn.Module, teacher: nn.Module) -> dict[str, tuple[int, int]]:
    """{stage path: (student blocks, teacher blocks)} for every `nn.Sequential` the two share by name
    whose student has fewer blocks (the stages to choose blocks in)."""
    teacher_modules = dict(teacher.named_modules())
    stages = {}
    for path, module in student.named_modules():
        other = teacher_modules.get(path)
        if isinstance(module, nn.Sequential) and isinstance(other, nn.Sequential) and len(module) < len(other):
            stages[path] = (len(module), len(other))
    return stages


def stage_influence(teacher: nn.Module, stage: str, blocks: int, images: Tensor) -> Tensor:
    """(blocks,) block influence of each block of a teacher stage on `images` (eval mode, no grad)."""
    modules = dict(teacher.named_modules())
    sums, hooks = torch.zeros(blocks, dtype=torch.float64), []
    for b in range(blocks):
        def hook(_module, inputs, output, b=b):
            x, y = inputs[0].flatten(1).double(), output.flatten(1).double()
            if x.shape == y.shape:  # a block that changes the shape (the first) is always kept
                sums[b] += (1 - F.cosine_similarity(x, y, dim=1)).sum()
            else:
                sums[b] = float("inf")
        hooks.append(modules[f"{stage}.{b}" if stage else str(b)].register_forward_hook(hook))
    try:
        with eval_mode(teacher), torch.no_grad():
            teacher(images)
    finally:
        for h in hooks:
            h.remove()
    return sums / len(images)


def choose_blocks(influence: Tensor, keep: int, select: str) -> list[int]:
    """Kept block indexes (sorted): block 0 always, then the top-influence (or evenly spaced) others."""
    total = len(influence)
    if select == "uniform":
        picks = torch.linspace(0, total - 1, keep).round().long().tolist()
        if len(set(picks)) == keep:
            return sorted(picks)
    rest = influence.clone()
    rest[0] = float("inf")
    return sorted(rest.topk(keep).indices.tolist())


def _teacher_name(name: str, mapping: dict[str, list[int]]) -> str:
    """The teacher tensor a student tensor copies: stage block indexes mapped through `mapping`."""
    for stage, kept in mapping.items():
        prefix = f"{stage}." if stage else ""
        match = re.match(rf"^{re.escape(prefix)}(\d+)\.(.*)$", name)
        if match:
            return f"{prefix}{kept[int(match.group(1))]}.{match.group(2)}"
    return name


def init_from_teacher(student: nn.Module, teacher: nn.Module, images: Tensor, select: str = "block_influence") -> dict[str, Any]:
    """Copy the teacher's weights into the shallower `student` in place; returns what was kept.

    images: (N, C, H, W) calibration inputs, normalised as the teacher sees them.
    """
    stages = block_stages(student, teacher)
    mapping, scores = {}, {}
    for stage, (keep, total) in stages.items():
        influence = stage_influence(teacher, stage, total, images) if select == "block_influence" else torch.zeros(total)
        mapping[stage] = choose_blocks(influence, keep, select)
        scores[stage] = [None if not torch.isfinite(v) else float(v) for v in influence]
    teacher_state = teacher.state_dict()
    copied = {}
    for name, value in student.state_dict().items():
        source = _teacher_name(name, mapping)
        if source not in teacher_state or teacher_state[source].shape != value.shape:
            got = "missing" if source not in teacher_state else f"shape {tuple(teacher_state[source].shape)}"
            raise ConfigError(f"student.init.from_teacher: the student's {name} {tuple(value.shape)} has no teacher "
                              f"counterpart ({source}: {got}); only a shallower student of the teacher's family "
                              "(fewer blocks per stage, same widths) can be cut from it")
        copied[name] = teacher_state[source]
    student.load_state_dict(copied)
    return {"blocks": mapping, "block_influence": scores, "select": select}
