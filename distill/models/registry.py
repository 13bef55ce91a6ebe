"""Model registry: built-in architectures plus `timm:<name>` / `torchvision:<name>` when installed.

A builder has the signature `build(*, num_classes, in_channels, image_size, **kwargs) -> nn.Module`.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any

from torch import nn

from distill.errors import ConfigError
from distill.registry import Registry, suggest

MODELS = Registry("model", discover="distill.models.zoo")
EXTERNAL_PREFIXES = ("timm:", "torchvision:")
BUILDER_ARGS = ("num_classes", "in_channels", "image_size")


def check_model_args(name: str, kwargs: dict, field: str) -> None:
    """Load-time check that `name` exists and `kwargs` fit its builder (external names: deferred)."""
    if name.startswith(EXTERNAL_PREFIXES):
        return
    builder = MODELS.get(name, field=f"{field}.name").obj
    params = inspect.signature(builder).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    accepted = [p for p in params if p not in BUILDER_ARGS and params[p].kind is inspect.Parameter.KEYWORD_ONLY]
    for key in kwargs:
        if key in BUILDER_ARGS:
            raise ConfigError(f"{field}.kwargs.{key}: set from the dataset, not the recipe")
        if key not in accepted and not takes_any:
            raise ConfigError(f"{field}.kwargs.{key}: {name} does not take this option{suggest(key, accepted)}; "
                              f"accepted: {', '.join(accepted) or 'none'}")


def create_model(name: str, kwargs: dict[str, Any] | None = None, *, num_classes: int, in_channels: int = 3,
                 image_size: int = 32) -> nn.Module:
    """Build a registered model, or a timm / torchvision model by prefixed name."""
    kwargs = dict(kwargs or {})
    if name.startswith("timm:"):
        timm = _import_optional("timm", name)
        return timm.create_model(name[5:], num_classes=num_classes, in_chans=in_channels, **kwargs)
    if name.startswith("torchvision:"):
        models = _import_optional("torchvision.models", name)
        return models.get_model(name[12:], num_classes=num_classes, **kwargs)
    builder = MODELS.get(name).obj
    return builder(num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kwargs)


def _import_optional(module: str, name: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"model {name!r} needs the package '{module.split('.')[0]}', which is not installed") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
