"""The frozen teacher: one wrapper for every teacher, whatever its source."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


class FrozenTeacher(nn.Module):
    """Wraps a teacher so that it stays frozen.

    - eval mode survives a parent's `.train()` (dropout and batch-norm statistics never change),
    - every parameter has requires_grad=False, and the forward runs under `torch.no_grad()`,
    - the training core refuses an optimizer that holds any of its parameters.
    Forward hooks registered on `teacher.model` (feature taps) still fire.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        for param in self.model.parameters():
            param.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "FrozenTeacher":
        # deliberately ignore `mode`: a teacher never leaves eval mode
        return super().train(False)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return self.model(*args, **kwargs)
