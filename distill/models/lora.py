"""LoRA students through the `peft` library (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", 2021).

Every base weight is frozen; each targeted linear layer W (out x in) gets a trainable low-rank update

    y = x W^T + s * dropout(x) A^T B^T,    A: r x in, B: out x r, s = alpha / r,

with B = 0 at the start, so the student starts as its base model. The optimizer only ever sees A
and B (the Trainer hands it the parameters with requires_grad), so its state is 2 x (r x (in + out))
per layer instead of 2 x (out x in).

The chunked loss (`distill.losses.fused`) never calls the LM head's forward: it multiplies final
hidden states by a weight matrix. `effective_weight` gives it the right one: the frozen head's weight
(no gradient, so the loss allocates no V x H gradient buffer), or, when the head itself carries a
LoRA, W + s * B @ A, differentiable so that A and B get their gradients through it (a V x H tensor
per step, the size of the head gradient that full fine-tuning holds anyway). That merged form cannot
apply the head's LoRA dropout, so a LoRA head with dropout > 0 is refused; it also cannot be merged
into a head tied to the input embeddings (the merge would change the embeddings), so that is refused too.

QLoRA (Dettmers et al., 2023: a 4-bit NF4 frozen base): `quantize: 4bit` loads the base through
bitsandbytes, which has no CPU kernels and is not installed here; without it the recipe is refused
at load. This path is not exercised by the tests (no bitsandbytes on the test machine).

Export: `adapter/` (peft's save_pretrained: adapter_config.json + adapter_model.safetensors, loaded
with `PeftModel.from_pretrained(base, adapter)`) and `model/`, the merged model (merge_and_unload),
an ordinary transformers folder that loads without peft.
"""
from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

from torch import Tensor, nn

from distill.config import option
from distill.errors import ConfigError

INSTALL = "student.lora needs the `peft` package: pip install 'distill[lora]'"


@dataclass(kw_only=True)
class LoRASpec:
    """student.lora: train a low-rank adapter on a frozen student instead of every weight."""

    r: int = option(8, min=1, help="rank of each update B @ A")
    alpha: float = option(16.0, min=0.0, min_exclusive=True, help="the update is scaled by alpha / r")
    dropout: float = option(0.0, min=0.0, help="dropout on the adapters' inputs (0 <= dropout < 1)")
    target_modules: Optional[Union[Literal["all-linear"], list[str]]] = option(
        None, help="module names to adapt, e.g. [q_proj, v_proj], or all-linear (every linear layer but the LM "
        "head); lm_head adapts the head too. Default: peft's default for the architecture (q_proj, v_proj for Llama)")
    quantize: Optional[Literal["4bit", "8bit"]] = option(
        None, help="QLoRA: load the frozen base quantized through bitsandbytes (CUDA only; needs student.path)")

    def __post_init__(self) -> None:
        if not self.dropout < 1.0:  # from_dict prefixes the field path to this message
            raise ValueError(f"dropout = {self.dropout}: must be below 1 (0 <= dropout < 1)")
        if isinstance(self.target_modules, list) and not self.target_modules:
            raise ValueError("target_modules = []: name at least one module, or leave it out for peft's default")


def peft_module() -> Any:
    try:
        import peft
    except ImportError:
        raise ConfigError(INSTALL) from None
    return peft


def check_quantize(spec: LoRASpec, student_path: str | None) -> None:
    """Load-time checks of `quantize` (QLoRA): bitsandbytes importable and a pretrained folder to load."""
    if spec.quantize is None:
        return
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"student.lora.quantize = {spec.quantize}: needs the `bitsandbytes` package and a CUDA GPU "
                          "(it has no CPU kernels); drop quantize for a LoRA on the unquantized base")
    if not student_path:
        raise ConfigError("student.lora.quantize quantizes the base while loading it: give student.path")


def load_quantized(path: str, spec: LoRASpec) -> nn.Module:
    """The pretrained model at `path` quantized while loading (NF4 with bfloat16 compute for 4bit, as in QLoRA)."""
    import torch
    import transformers
    if spec.quantize == "4bit":
        quant = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_use_double_quant=True)
    else:
        quant = transformers.BitsAndBytesConfig(load_in_8bit=True)
    return transformers.AutoModelForCausalLM.from_pretrained(path, quantization_config=quant, dtype=torch.bfloat16)


def apply_lora(model: nn.Module, spec: LoRASpec) -> nn.Module:
    """`model` wrapped as a peft LoRA model: base frozen, adapters trainable (float32 even on a half-precision base).

    Adapter A matrices are drawn from torch's global RNG (seed it first for a reproducible run).
    """
    peft = peft_module()
    if spec.quantize is not None:
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = peft.LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, bias="none",
                             target_modules=spec.target_modules, task_type="CAUSAL_LM")
    try:
        with warnings.catch_warnings():  # peft asks transformers a deprecated question on every wrap
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            wrapped = peft.get_peft_model(model, config)
    except ValueError as exc:  # e.g. no default target modules for this architecture, or a name that matches nothing
        raise ConfigError(f"student.lora.target_modules = {spec.target_modules}: {str(exc).splitlines()[0]}") from None
    check_head(wrapped, spec)
    return wrapped


def is_lora_layer(module: nn.Module) -> bool:
    """Whether `module` is a peft LoRA layer (duck-typed, so callers need not import peft)."""
    return hasattr(module, "lora_A") and hasattr(module, "get_delta_weight") and hasattr(module, "base_layer")


def check_head(model: nn.Module, spec: LoRASpec) -> None:
    head = model.get_output_embeddings()
    if not is_lora_layer(head):
        return
    if spec.dropout:
        raise ConfigError(f"student.lora: the LM head is adapted and dropout = {spec.dropout}; the chunked loss "
                          "multiplies by the merged head weight, which has no dropout: set dropout: 0 or drop the "
                          "head from target_modules")
    if head.base_layer.weight is model.get_input_embeddings().weight:
        raise ConfigError("student.lora.target_modules: this student ties its LM head to the input embeddings "
                          "(tie_word_embeddings), so a LoRA on the head cannot be merged into one model: drop the head")


def effective_weight(head: nn.Module) -> Tensor:
    """The (V, H) weight the chunked loss multiplies hidden states by: W, or W + s * B @ A for a LoRA head
    whose adapters are active and not merged (differentiable in A and B, not in the frozen W)."""
    if not is_lora_layer(head):
        return head.weight
    weight = head.base_layer.weight
    if head.disable_adapters or head.merged:
        return weight
    delta = None
    for name in head.active_adapters:
        if name in head.lora_A:
            part = head.get_delta_weight(name)
            delta = part if delta is None else delta + part
    return weight if delta is None else weight + delta.to(weight.dtype)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """{"params": every parameter, "trainable_params": those with requires_grad} (shared tensors counted once)."""
    unique = {id(p): p for p in model.parameters()}.values()
    return {"params": sum(p.numel() for p in unique), "trainable_params": sum(p.numel() for p in unique if p.requires_grad)}


def export_lora(model: nn.Module, folder: Path, spec: LoRASpec) -> list[str]:
    """Write `folder/adapter/` and, unless the base is quantized, `folder/model/` (merged); returns what was written.

    The merge is in place (a copy would hold a second model in memory at the end of every run): afterwards
    `model`'s layers hold W + s * B @ A and no adapters, the same function in eval mode.
    """
    folder = Path(folder)
    model.save_pretrained(folder / "adapter")
    written = ["adapter"]
    if spec.quantize is None:  # a merge into 4-bit weights would re-quantize them: the adapter is the export
        model.merge_and_unload().save_pretrained(folder / "model")
        written.append("model")
    return written
