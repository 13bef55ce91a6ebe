"""Listeners of the Trainer's evaluations, for code that drives whole runs (`distill sweep`).

    with watch_evaluations(fn):      # fn(stage, epoch, metrics, final) after every evaluation of
        task.run(cfg)                # every Trainer started inside the block, in this thread

`stage` is the Trainer's `desc` (the stage folder's name), `epoch` the number of finished epochs,
`metrics` the evaluation's scalar figures and `final` whether the schedule has ended. An exception
`fn` raises stops that stage where it is: its metrics.jsonl and earlier checkpoints stay, and no
done.json is written (this is how a sweep prunes a trial). Without listeners the Trainer behaves
exactly as before.
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Any, Callable, Iterator

Listener = Callable[[str, int, dict[str, Any], bool], None]

_LISTENERS: ContextVar[tuple[Listener, ...]] = ContextVar("distill_evaluation_listeners", default=())


@contextlib.contextmanager
def watch_evaluations(fn: Listener) -> Iterator[None]:
    """Call `fn(stage, epoch, metrics, final)` after each evaluation inside the block."""
    token = _LISTENERS.set(_LISTENERS.get() + (fn,))
    try:
        yield
    finally:
        _LISTENERS.reset(token)


def notify_evaluation(stage: str, epoch: int, metrics: dict[str, Any], final: bool) -> None:
    """Called by the Trainer after it logged an evaluation."""
    for fn in _LISTENERS.get():
        fn(stage, epoch, metrics, final)
