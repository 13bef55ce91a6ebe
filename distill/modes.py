"""Modules put in train or eval mode for a block, with every submodule's own mode given back after it.

Evaluation, probes and sampling run a model in eval mode (no dropout, batch-norm statistics left alone) in the
middle of training. `model.train(was_training)` would restore only the top module's flag and push it down to
every submodule, switching a frozen part that was in eval mode (a teacher inside a wrapper, a frozen encoder)
back to train mode; these contexts restore each submodule's own flag, also when the block raises.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

from torch import nn


@contextmanager
def module_mode(training: bool, *modules: Optional[nn.Module]) -> Iterator[None]:
    """Each of `modules` (None entries skipped) in train mode (`training=True`) or eval mode for the block."""
    saved = [(m, m.training) for module in modules if module is not None for m in module.modules()]
    for module in modules:
        if module is not None:
            module.train(training)
    try:
        yield
    finally:
        for m, was_training in saved:
            m.training = was_training


def eval_mode(*modules: Optional[nn.Module]):
    """`module_mode(False, *modules)`: the modules in eval mode for the block, their own modes restored."""
    return module_mode(False, *modules)


def set_dropout(model: nn.Module, p: float) -> int:
    """Set the probability of every `nn.Dropout` in `model` to `p` (0 turns dropout off while training, as
    TRL's `disable_dropout` does); returns how many there were. Attention implementations read their
    module's `p`, so this covers them too in BERT-style encoders; the saved config is left as it was."""
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    for module in dropouts:
        module.p = p
    return len(dropouts)
