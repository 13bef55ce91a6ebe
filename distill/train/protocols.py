"""What the Trainer drives: an objective and a batch source, with every hook stated.

The Trainer calls each hook directly (no `getattr` probes). `ObjectiveHooks` holds the defaults
(`distill.methods.Method` inherits them); batch sources inherit theirs from
`distill.data.source.BatchSourceHooks`.
"""
from __future__ import annotations

from typing import Any, Iterator, Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class Objective(Protocol):
    """batch -> {"loss": scalar, "<part>": scalar, ...}; every part is logged."""

    def __call__(self, batch: dict[str, Any]) -> dict[str, Tensor]: ...

    def count(self, batch: dict[str, Any]) -> int:
        """The micro-batch's weight in the step's mean (examples; valid tokens for LMs)."""

    def on_epoch_start(self, epoch: int) -> None:
        """Before each epoch (warm-up schedules)."""

    def on_step_end(self, step: int, total_steps: int, parts: dict[str, float]) -> None:
        """After each optimizer step, with the step's loss parts averaged over micro-batches and ranks."""

    def extra_state(self) -> dict[str, Any]:
        """JSON-able state saved in checkpoints."""

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what `extra_state` returned."""


@runtime_checkable
class BatchSource(Protocol):
    """A deterministic batch stream: batch i of epoch e is a function of (seed, e, i)."""

    def __len__(self) -> int: ...

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict[str, Any]]: ...

    def state(self) -> dict[str, Any]: ...

    def load_state(self, state: dict[str, Any]) -> None: ...

    def log_stats(self) -> dict[str, float]: ...

    def observe_validation(self, metrics: dict[str, Any]) -> None: ...


class ObjectiveHooks:
    """Defaults of the optional objective hooks."""

    def count(self, batch: dict[str, Any]) -> int:
        for value in batch.values():
            if isinstance(value, Tensor) and value.dim():
                return int(value.shape[0])
        return 1

    def on_epoch_start(self, epoch: int) -> None:
        pass

    def on_step_end(self, step: int, total_steps: int, parts: dict[str, float]) -> None:
        pass

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass


def missing_members(obj: Any, protocol: type) -> list[str]:
    """The members of `protocol` that `obj` lacks (for error messages)."""
    wanted = [n for n, v in vars(protocol).items() if callable(v) and (not n.startswith("_") or n in ("__call__", "__len__"))]
    return sorted(n for n in wanted if not hasattr(obj, n))
