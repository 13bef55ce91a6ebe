"""Decorator-based registries (methods, models, datasets, tasks).

A registry can name a package to *discover*: on first lookup every module of that package is
imported, so a new method is one new file that registers itself and touches no central file.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from distill.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    """One registered object: its name, the object, its config schema and a one-line summary."""

    name: str
    obj: Any
    config: type | None
    summary: str


def suggest(name: str, options: list[str]) -> str:
    """' (did you mean 'x'?)' for the nearest option, or '' when nothing is close."""
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def first_doc_line(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0].strip() if doc else ""


class Registry:
    """Name -> Entry map filled by the `register` decorator."""

    def __init__(self, kind: str, discover: str | None = None):
        self.kind = kind
        self._package = discover
        self._discovered = discover is None
        self._entries: dict[str, Entry] = {}

    def register(self, name: str | None = None, *, config: type | None = None, summary: str | None = None) -> Callable:
        """Decorator: `@METHODS.register("kd", config=KDConfig)`; `summary` defaults to the object's first doc line."""

        def add(obj: Any) -> Any:
            key = name or obj.__name__
            previous = self._entries.get(key)
            if previous is not None and previous.obj is not obj and _qualname(previous.obj) != _qualname(obj):
                raise ValueError(f"{self.kind} '{key}' is registered twice: {_qualname(previous.obj)} and {_qualname(obj)}")
            self._entries[key] = Entry(key, obj, config, summary if summary is not None else first_doc_line(obj))
            return obj

        return add

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self._package)
        for info in pkgutil.iter_modules(package.__path__, prefix=package.__name__ + "."):
            importlib.import_module(info.name)

    def get(self, name: str, *, field: str | None = None) -> Entry:
        """The entry called `name`; an unknown name is a ConfigError naming `field` and the options."""
        self._discover()
        if name in self._entries:
            return self._entries[name]
        where = f"{field} = {name!r}: " if field else f"{name!r}: "
        raise ConfigError(f"{where}unknown {self.kind}{suggest(name, self.names())}; available: {', '.join(self.names())}")

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._entries

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry]:
        self._discover()
        return (self._entries[k] for k in sorted(self._entries))


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
