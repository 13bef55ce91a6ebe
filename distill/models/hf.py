"""Hugging Face causal LMs: loading, scaled-down students, tokenizer checks, hidden states.

The distillation losses never call a model's full forward (which would build B x T x V logits):
`LMBody` returns the final hidden states, and the loss multiplies them by the output-embedding
weight chunk by chunk (`distill.losses.fused`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from distill.errors import ConfigError
from distill.models.lora import effective_weight
from distill.train.fsdp import gather_root

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def fast_bfloat16() -> bool:
    """Whether this machine's CPU runs bfloat16 matrix products natively (oneDNN with AVX512-BF16 or AMX).

    Causal-LM runs are on the CPU. Without those instructions torch emulates bfloat16 and a teacher
    forward is slower than in float32 (SmolLM2-135M on an AVX2-only EPYC: 5.4x slower), so `auto`
    keeps float32 there.
    """
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_dtype(name: str) -> str:
    """A dtype name, with `auto` resolved: bfloat16 where the CPU runs it natively, float32 elsewhere."""
    if name != "auto":
        return name
    return "bfloat16" if fast_bfloat16() else "float32"


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ConfigError("causal-LM distillation needs transformers: pip install 'distill[llm]'") from None
    return transformers


def resolve_source(source: str) -> tuple[str, bool]:
    """(path or hub id, is_local): a local path is expanded; anything else is treated as a hub id."""
    path = Path(source).expanduser()
    return (str(path), True) if path.exists() else (source, False)


def load_causal_lm(source: str, dtype: str = "float32") -> nn.Module:
    """AutoModelForCausalLM from a local folder or a hub id (a hub id needs network access)."""
    tf = _transformers()
    name, local = resolve_source(source)
    try:
        return tf.AutoModelForCausalLM.from_pretrained(name, dtype=DTYPES[resolve_dtype(dtype)], local_files_only=local)
    except OSError as exc:
        hint = "" if local else " (not a local folder; loading it from the hub needs network access)"
        raise ConfigError(f"cannot load model {source!r}{hint}: {str(exc).splitlines()[0]}") from None


def load_tokenizer(source: str) -> Any:
    tf = _transformers()
    name, local = resolve_source(source)
    try:
        return tf.AutoTokenizer.from_pretrained(name, local_files_only=local)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load a tokenizer from {source!r}: {str(exc).splitlines()[0]}") from None


def student_from_config(teacher_config: Any, overrides: dict[str, Any], dtype: str = "float32") -> nn.Module:
    """A randomly initialised model of the teacher's architecture with config fields replaced."""
    tf = _transformers()
    config = teacher_config.__class__.from_dict({**teacher_config.to_dict(), **overrides})
    unknown = [k for k in overrides if not hasattr(config, k)]
    if unknown:
        raise ConfigError(f"student.config: {unknown[0]!r} is not a field of {type(config).__name__}")
    return tf.AutoModelForCausalLM.from_config(config, dtype=DTYPES[dtype])


def load_config(source: str) -> Any:
    """The transformers config of a local model folder (or hub id)."""
    name, local = resolve_source(source)
    try:
        return _transformers().AutoConfig.from_pretrained(name, local_files_only=local)
    except OSError as exc:
        raise ConfigError(f"cannot load a model config from {source!r}: {str(exc).splitlines()[0]}") from None


def config_from_dict(values: dict[str, Any]) -> Any:
    """A transformers config from its `to_dict()` form (the store keeps the teacher's)."""
    return _transformers().AutoConfig.for_model(**values)


def tokenizer_hash(tokenizer: Any) -> str:
    """Hash of vocabulary, special tokens and chat template (what makes two tokenizers interchangeable)."""
    payload = {"vocab": sorted(tokenizer.get_vocab().items()), "special": tokenizer.special_tokens_map,
               "chat_template": getattr(tokenizer, "chat_template", None)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_same_tokenizer(teacher_tok: Any, student_tok: Any) -> None:
    """Different vocabularies cannot be distilled token by token."""
    if teacher_tok.get_vocab() != student_tok.get_vocab():
        raise ConfigError("teacher and student tokenizers differ: token-level distillation needs one vocabulary; "
                          "cross-tokenizer distillation is needed for this pair (method alm, gold, uld or xtoken)")


def vocab_limit(tokenizer: Any, *models: nn.Module) -> tuple[int, str | None]:
    """The number of logits to compare, and a notice when some model pads its vocabulary beyond the tokenizer."""
    size = len(tokenizer)
    heads = [m.get_output_embeddings().weight.shape[0] for m in models]
    if any(h < size for h in heads):
        raise ConfigError(f"a model has {min(heads)} output rows but the tokenizer has {size} tokens")
    if any(h != size for h in heads):
        return size, f"note: output vocabularies {heads} are padded beyond the tokenizer's {size} tokens; comparing the first {size}"
    return size, None


class LMBody(nn.Module):
    """The model without its output projection: (input_ids, attention_mask) -> final hidden states (B, T, H).

    Wrapping this (not the whole LM) in DistributedDataParallel keeps DDP's forward free of logits;
    the output-embedding weight is still a parameter of the wrapped model, so its gradient is
    synchronised with the rest.
    """

    def __init__(self, lm: nn.Module):
        super().__init__()
        head = lm.get_output_embeddings()
        if getattr(head, "bias", None) is not None:  # the chunked loss multiplies by the weight only
            raise ConfigError(f"{type(lm).__name__} has a bias on its output layer; distill's chunked loss supports "
                              "bias-free LM heads only (Llama, Qwen, Gemma, SmolLM, Mistral, GPT-2 have none)")
        self.lm = lm

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    @property
    def head_weight(self) -> Tensor:
        """(V, H): the output-embedding weight; for a LoRA head (`distill.models.lora`), W + s * B @ A."""
        # sharded by FSDP2 and not gathered by a forward yet (evaluation reads the head first): gather it
        gather_root(self, self.lm.get_output_embeddings().weight)
        return effective_weight(self.lm.get_output_embeddings())
