"""A model's own input preprocessing, stated in the recipe and applied by a forward pre-hook.

distill feeds every classification model the dataset's images normalised with the dataset's mean/std.
A teacher trained elsewhere may expect raw [0, 1] pixels, ImageNet statistics or another input size;
fed distill's inputs it scores near chance without any error. A teacher spec can therefore say
`normalize: none` (raw [0, 1] pixels), `normalize: given` with its own `mean`/`std`, and `input_size`.
The hook undoes the dataset normalisation and applies the model's own, so module names, feature taps
and the exported weights stay those of the unmodified model (nothing is wrapped).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn


def _view(values: Sequence[float]) -> Tensor:
    return torch.tensor(list(values), dtype=torch.float32).view(1, -1, 1, 1)


def input_transform(data_mean: Sequence[float], data_std: Sequence[float], normalize: str,
                    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                    input_size: int | None = None):
    """x normalised with the dataset's statistics -> x as the model expects it (None: nothing to change)."""
    if normalize == "dataset" and input_size is None:
        return None
    d_mean, d_std = _view(data_mean), _view(data_std)
    own = (_view(mean), _view(std)) if normalize == "given" else None

    def transform(x: Tensor) -> Tensor:
        if normalize != "dataset":
            x = x * d_std.to(x) + d_mean.to(x)  # back to [0, 1] pixels
            if own is not None:
                x = (x - own[0].to(x)) / own[1].to(x)
        if input_size is not None and tuple(x.shape[-2:]) != (input_size, input_size):
            x = nn.functional.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False)
        return x
    return transform


def attach_preprocessing(model: nn.Module, transform: Any) -> Any:
    """Apply `transform` to the model's first positional input on every forward; returns the hook handle."""
    if transform is None:
        return None
    return model.register_forward_pre_hook(lambda module, args: (transform(args[0]), *args[1:]))
