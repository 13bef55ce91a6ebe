"""Students initialised from their teacher: depth and width pruning of a decoder-only causal LM.

Depth follows ShortGPT ("ShortGPT: Layers in Large Language Models are More Redundant Than You Expect",
Men et al., 2024): the *block influence* of decoder layer i is

    BI_i = 1 - mean over calibration tokens of cos(x_i, x_{i+1})

where x_i is the hidden state entering layer i and x_{i+1} the one leaving it; the layers with the highest
BI are kept (a layer that barely turns its input is the cheapest to drop).

Width follows Minitron ("Compact Language Models via Pruning and Knowledge Distillation", Muralidharan et
al., NVIDIA 2024): importances are activations on the calibration tokens, measured by forward hooks,

    MLP channel j      mean |a_j| over tokens, a = the input of down_proj (per layer)
    KV group g         sum over the query heads of g of mean_tokens ||o_h||_2, o = the input of o_proj (per layer)
    hidden channel c   sum over every RMSNorm output of the model of mean_tokens |n_c|

and each axis keeps its top entries (in their original order), then the weights are sliced. Attention is
pruned by whole KV groups so the grouped-query ratio is kept. When both are asked for, depth is pruned
first and the width importances are measured on the shallower model.

The result is an ordinary `transformers` model of the same class whose config says its new sizes: it saves
with `save_pretrained` and loads with `from_pretrained`. Width pruning supports Llama-style layers
(`self_attn.{q,k,v,o}_proj`, `mlp.{gate,up,down}_proj`, RMSNorms: Llama, Mistral, Qwen2/3, SmolLM2);
depth pruning any model whose decoder layers are `model.model.layers`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from torch import Tensor, nn

from distill.errors import ConfigError
from distill.models.hf import _transformers

WIDTH_MODULES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


@dataclass
class PrunePlan:
    """What to keep: decoder layer indexes, and per axis the kept indexes (None: keep the axis whole)."""

    layers: list[int]
    hidden: Tensor | None = None
    mlp: list[Tensor] | None = None  # per kept layer
    kv_groups: list[Tensor] | None = None  # per kept layer
    scores: dict[str, Any] = field(default_factory=dict)  # the importances the choice came from


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ConfigError(f"student.init.from_teacher: {type(model).__name__} has no model.layers list of decoder "
                          "layers to prune")
    return layers


# ----------------------------------------------------------------------------- importances (forward hooks)

def _first_tensor(value: Any) -> Tensor:
    return value[0] if isinstance(value, (tuple, list)) else value


@torch.no_grad()
def _run(model: nn.Module, batches: Iterable[dict[str, Tensor]]) -> None:
    for batch in batches:
        model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"))


def _token_mask(batch_masks: list[Tensor], hidden: Tensor) -> Tensor:
    """(B, S) mask of the current batch's real tokens (all ones without an attention mask)."""
    return batch_masks[-1].bool() if batch_masks else torch.ones(hidden.shape[:2], dtype=torch.bool)


@torch.no_grad()
def block_influence(model: nn.Module, batches: list[dict[str, Tensor]]) -> Tensor:
    """(L,) ShortGPT block influence of every decoder layer on the calibration batches."""
    layers = decoder_layers(model)
    sums = torch.zeros(len(layers), dtype=torch.float64)
    count = torch.zeros(len(layers), dtype=torch.float64)
    inputs: dict[int, Tensor] = {}
    masks: list[Tensor] = []

    def before(i):
        def hook(module, args, kwargs):
            inputs[i] = args[0] if args else kwargs["hidden_states"]
        return hook

    def after(i):
        def hook(module, args, kwargs, output):
            x, y = inputs.pop(i).float(), _first_tensor(output).float()
            keep = _token_mask(masks, x)
            cos = nn.functional.cosine_similarity(x[keep], y[keep], dim=-1)
            sums[i] += (1 - cos).double().sum()
            count[i] += keep.sum()
        return hook

    handles = [h for i, layer in enumerate(layers) for h in
               (layer.register_forward_pre_hook(before(i), with_kwargs=True),
                layer.register_forward_hook(after(i), with_kwargs=True))]
    try:
        for batch in batches:
            masks[:] = [batch["attention_mask"]] if batch.get("attention_mask") is not None else []
            _run(model, [batch])
    finally:
        for h in handles:
            h.remove()
    return (sums / count.clamp_min(1)).float()


def check_width_prunable(model: nn.Module) -> None:
    layer = decoder_layers(model)[0]
    names = dict(layer.named_modules())
    missing = [m for m in WIDTH_MODULES if not isinstance(names.get(m), nn.Linear)]
    if missing:
        raise ConfigError(f"student.init.from_teacher: width pruning needs Llama-style decoder layers; "
                          f"{type(layer).__name__} has no {missing[0]}")


@torch.no_grad()
def width_importance(model: nn.Module, batches: list[dict[str, Tensor]]) -> dict[str, Any]:
    """Minitron activation importances: {"hidden": (H,), "mlp": [(I,)] per layer, "kv_groups": [(G,)] per layer}."""
    check_width_prunable(model)
    cfg = model.config
    heads, groups = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    layers = decoder_layers(model)
    hidden = torch.zeros(cfg.hidden_size, dtype=torch.float64)
    mlp = [torch.zeros(layer.mlp.down_proj.in_features, dtype=torch.float64) for layer in layers]
    head_score = [torch.zeros(heads, dtype=torch.float64) for _ in layers]
    tokens = torch.zeros(1, dtype=torch.float64)
    masks: list[Tensor] = []

    def mean_abs(x: Tensor) -> Tensor:
        keep = _token_mask(masks, x)
        return x[keep].float().abs().double().sum(0)

    def on_norm(module, args, output):
        nonlocal hidden
        hidden += mean_abs(_first_tensor(output))

    def on_down(i):
        def hook(module, args):
            mlp[i].add_(mean_abs(args[0]))
        return hook

    def on_o(i):
        def hook(module, args):
            x = args[0]
            keep = _token_mask(masks, x)
            per_head = x[keep].float().view(-1, heads, head_dim).norm(dim=-1)
            head_score[i].add_(per_head.double().sum(0))
        return hook

    norms = [m for m in model.modules() if "RMSNorm" in type(m).__name__ or isinstance(m, nn.LayerNorm)]
    norms = [m for m in norms if getattr(m, "weight", None) is not None and m.weight.shape == (cfg.hidden_size,)]
    handles = [m.register_forward_hook(on_norm) for m in norms]
    for i, layer in enumerate(layers):
        handles.append(layer.mlp.down_proj.register_forward_pre_hook(on_down(i)))
        handles.append(layer.self_attn.o_proj.register_forward_pre_hook(on_o(i)))
    try:
        for batch in batches:
            masks[:] = [batch["attention_mask"]] if batch.get("attention_mask") is not None else []
            tokens += _token_mask(masks, batch["input_ids"]).sum()
            _run(model, [batch])
    finally:
        for h in handles:
            h.remove()
    per_group = [(s / tokens).view(groups, heads // groups).sum(1).float() for s in head_score]
    return {"hidden": (hidden / tokens).float(), "mlp": [(m / tokens).float() for m in mlp], "kv_groups": per_group}


def top_indexes(scores: Tensor, keep: int) -> Tensor:
    """The `keep` highest-scoring indexes, in their original order."""
    return torch.sort(torch.topk(scores, keep).indices).values


# ----------------------------------------------------------------------------- building the pruned model

def _new_config(config: Any, plan: PrunePlan) -> Any:
    values = config.to_dict()
    values["num_hidden_layers"] = len(plan.layers)
    if isinstance(values.get("layer_types"), list):
        values["layer_types"] = [values["layer_types"][i] for i in plan.layers]
    if plan.hidden is not None:
        values["hidden_size"] = len(plan.hidden)
    if plan.mlp is not None:
        values["intermediate_size"] = len(plan.mlp[0])
    if plan.kv_groups is not None:
        ratio = config.num_attention_heads // config.num_key_value_heads
        values["head_dim"] = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        values["num_key_value_heads"] = len(plan.kv_groups[0])
        values["num_attention_heads"] = len(plan.kv_groups[0]) * ratio
    return config.__class__.from_dict(values)


def _head_rows(groups: Tensor, per_group: int, head_dim: int) -> Tensor:
    """Row indexes of the heads of the kept groups in a (heads * head_dim, ...) projection."""
    heads = (groups[:, None] * per_group + torch.arange(per_group)).reshape(-1)
    return (heads[:, None] * head_dim + torch.arange(head_dim)).reshape(-1)


def _slice(name: str, value: Tensor, plan: PrunePlan, layer: int | None, config: Any) -> Tensor:
    """`value` of parameter `name` (in the depth-pruned numbering) cut to the plan's widths."""
    hid = plan.hidden
    out_idx = in_idx = None
    if layer is not None and plan.kv_groups is not None:
        ratio = config.num_attention_heads // config.num_key_value_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        groups = plan.kv_groups[layer]
        if re.search(r"self_attn\.q_proj\.", name):
            out_idx = _head_rows(groups, ratio, head_dim)
        elif re.search(r"self_attn\.[kv]_proj\.", name):
            out_idx = _head_rows(groups, 1, head_dim)
        elif re.search(r"self_attn\.o_proj\.weight", name):
            in_idx = _head_rows(groups, ratio, head_dim)
    if layer is not None and plan.mlp is not None:
        if re.search(r"mlp\.(gate|up)_proj\.", name):
            out_idx = plan.mlp[layer]
        elif name.endswith("mlp.down_proj.weight"):
            in_idx = plan.mlp[layer]
    if hid is not None:
        if re.search(r"(q|k|v|gate|up)_proj\.weight$", name) or "embed_tokens" in name or "lm_head" in name:
            in_idx = hid
        elif re.search(r"(o|down)_proj\.(weight|bias)$", name):
            out_idx = hid
        elif value.dim() == 1 and value.shape[0] == config.hidden_size and "norm" in name:
            out_idx = hid
    if out_idx is not None:
        value = value.index_select(0, out_idx)
    if in_idx is not None and value.dim() == 2:
        value = value.index_select(1, in_idx)
    return value


def apply_plan(model: nn.Module, plan: PrunePlan) -> nn.Module:
    """A new model of `model`'s class holding `plan`'s layers and widths, weights copied from `model`."""
    config = _new_config(model.config, plan)
    new_index = {old: new for new, old in enumerate(plan.layers)}
    state = {}
    for name, value in model.state_dict().items():
        match = re.match(r"(model\.layers\.)(\d+)(\..*)", name)
        layer = None
        if match:
            if int(match.group(2)) not in new_index:
                continue
            layer = new_index[int(match.group(2))]
            name = f"{match.group(1)}{layer}{match.group(3)}"
        state[name] = _slice(name, value, plan, layer, model.config).clone()
    dtype = next(model.parameters()).dtype
    student = _transformers().AutoModelForCausalLM.from_config(config, dtype=dtype)
    missing, unexpected = student.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (m == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"pruned weights do not fit the pruned config: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}")
    if config.tie_word_embeddings:
        student.tie_weights()
    return student


# ----------------------------------------------------------------------------- from a recipe's spec

def choose_layers(model: nn.Module, spec: Any, batches: list[dict[str, Tensor]]) -> tuple[list[int], dict[str, Any]]:
    """The decoder layers to keep (sorted) and the scores they were chosen by."""
    total = len(decoder_layers(model))
    if spec.layers is not None and spec.num_layers is not None:
        raise ConfigError("student.init.from_teacher: give layers or num_layers, not both")
    if spec.layers is not None:
        bad = [i for i in spec.layers if not 0 <= i < total]
        if bad or len(set(spec.layers)) != len(spec.layers) or not spec.layers:
            raise ConfigError(f"student.init.from_teacher.layers: {spec.layers} are not distinct indexes of the "
                              f"teacher's {total} layers")
        return sorted(spec.layers), {}
    keep = spec.num_layers or total
    if keep > total:
        raise ConfigError(f"student.init.from_teacher.num_layers = {keep}: the teacher has {total} layers")
    if keep == total:
        return list(range(total)), {}
    if spec.select == "uniform":
        return sorted({round(i * (total - 1) / max(keep - 1, 1)) for i in range(keep)}), {}
    influence = block_influence(model, batches)
    return top_indexes(influence, keep).tolist(), {"block_influence": [round(float(x), 6) for x in influence]}


def _checked_width(name: str, value: int | None, current: int) -> int | None:
    if value is None or value == current:
        return None
    if value > current:
        raise ConfigError(f"student.init.from_teacher.{name} = {value}: the teacher has {current}")
    return value


def prune_from_teacher(teacher: nn.Module, spec: Any, batches: list[dict[str, Tensor]]) -> tuple[nn.Module, dict[str, Any]]:
    """A student pruned out of `teacher` as `spec` (FromTeacherSpec) says; returns it and what was kept."""
    cfg = teacher.config
    layers, scores = choose_layers(teacher, spec, batches)
    model = apply_plan(teacher, PrunePlan(layers)) if len(layers) < len(decoder_layers(teacher)) else teacher
    widths = {"hidden": _checked_width("hidden_size", spec.hidden_size, cfg.hidden_size),
              "mlp": _checked_width("intermediate_size", spec.intermediate_size, cfg.intermediate_size),
              "kv": _checked_width("num_key_value_heads", spec.num_key_value_heads, cfg.num_key_value_heads)}
    heads = (widths["kv"] or cfg.num_key_value_heads) * (cfg.num_attention_heads // cfg.num_key_value_heads)
    if (widths["hidden"] or cfg.hidden_size) % heads:
        raise ConfigError(f"student.init.from_teacher: hidden_size {widths['hidden'] or cfg.hidden_size} is not a "
                          f"multiple of the {heads} attention heads kept (transformers requires it)")
    if any(v is not None for v in widths.values()):
        importance = width_importance(model, batches)
        plan = PrunePlan(list(range(len(layers))))
        if widths["hidden"] is not None:
            plan.hidden = top_indexes(importance["hidden"], widths["hidden"])
        if widths["mlp"] is not None:
            plan.mlp = [top_indexes(s, widths["mlp"]) for s in importance["mlp"]]
        if widths["kv"] is not None:
            plan.kv_groups = [top_indexes(s, widths["kv"]) for s in importance["kv_groups"]]
        model = apply_plan(model, plan)
    elif model is teacher:  # nothing pruned: still a copy, so the frozen teacher is never trained
        model = apply_plan(teacher, PrunePlan(layers))
    report = {"layers": layers, **scores, "params": sum(p.numel() for p in model.parameters()),
              "config": {k: getattr(model.config, k) for k in ("num_hidden_layers", "hidden_size", "intermediate_size",
                                                               "num_attention_heads", "num_key_value_heads")}}
    return model.train(), report
