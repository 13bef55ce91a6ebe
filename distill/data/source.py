"""The optional hooks of a batch source, defaulted (the Trainer's `BatchSource` protocol,
`distill.train.protocols`, states them; sources subclass this and override what they use)."""
from __future__ import annotations

from typing import Any


class BatchSourceHooks:
    """Defaults: no state to checkpoint, nothing extra to log, validation results ignored."""

    def state(self) -> dict[str, Any]:
        """JSON-able state saved in checkpoints (an on-policy schedule, a replay buffer)."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what `state` returned."""

    def log_stats(self) -> dict[str, float]:
        """Extra figures for each training log line."""
        return {}

    def observe_validation(self, metrics: dict[str, Any]) -> None:
        """Called with each evaluation's metrics (adaptive schedules react to the validation loss)."""
