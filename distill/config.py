"""Typed config: dataclass schemas, YAML recipes, dotted `key=value` overrides, validation.

Dataclasses are the schema. `option()` attaches help text and range checks to a field. A field
whose metadata names a `registry` is polymorphic: its YAML mapping carries `name`, and the rest
is validated against the config class that name registered (this is how each method brings its
own schema without editing this file).

Every problem is raised as one `ConfigError` line naming the dotted key, the value and what is
accepted, before any work starts.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from distill.errors import ConfigError
from distill.registry import Registry, suggest

MISSING = dataclasses.MISSING


def option(default: Any = MISSING, *, default_factory: Any = MISSING, help: str = "",
           min: float | None = None, max: float | None = None, min_exclusive: bool = False,
           registry: Registry | None = None) -> Any:
    """A dataclass field with help text and bounds, checked at load time."""
    meta = {"help": help, "min": min, "max": max, "min_exclusive": min_exclusive, "registry": registry}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# ----------------------------------------------------------------------------- loading

def load_yaml(path: str | Path) -> dict:
    """Read a recipe file into a plain dict (an empty file is an error)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"recipe {str(path)!r}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {str(path)!r}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """'train.epochs=3' -> ('train.epochs', 3); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, for example train.epochs=3")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: the key must be dotted names, for example method.temperature")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Return a copy of `data` with each dotted `key=value` set (validation happens later)."""
    data = json.loads(json.dumps(data))  # deep copy of plain YAML data
    for text in overrides:
        key, value = parse_override(text)
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(parts[:i + 1])} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data


# ----------------------------------------------------------------------------- validation

def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass `cls` from plain `data`, checking keys, types and bounds."""
    if dataclasses.is_dataclass(data) and isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'recipe'}: expected a mapping, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            moved = cls.moved_key_hint(str(key), data) if hasattr(cls, "moved_key_hint") else None
            if moved:  # a key a newer schema moved elsewhere: say where, in one line
                raise ConfigError(f"{_join(path, str(key))}: {moved}")
            raise ConfigError(f"{_join(path, str(key))}: unknown key{suggest(str(key), list(fields))}; "
                              f"valid keys: {', '.join(fields)}")
    values = {}
    for name, f in fields.items():
        key = _join(path, name)
        if name in data:
            values[name] = _convert(data[name], hints[name], f.metadata, key)
            _check_bounds(values[name], f.metadata, key)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(f"{key}: required key is missing{_help(f.metadata)}")
    try:
        obj = cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path or 'recipe'}: {exc}") from None
    return obj


def check_value(value: Any, hint: Any, meta: typing.Mapping, key: str) -> Any:
    """`value` converted for a field of type `hint` and checked against its `option()` bounds (as at load
    time); one ConfigError line naming `key` otherwise. Used where values are chosen later (`distill sweep`)."""
    out = _convert(value, hint, meta, key)
    _check_bounds(out, meta, key)
    return out


def _convert(value: Any, hint: Any, meta: typing.Mapping, key: str) -> Any:
    registry = meta.get("registry") if meta else None
    if registry is not None:
        if value is None and type(None) in get_args(hint):
            return None
        return _convert_registered(value, registry, key)
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(value, inner[0], {}, key)
        return _convert_union(value, inner, key)
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            hint_text = suggest(str(value), [str(a) for a in args])
            raise ConfigError(f"{key} = {value!r}: not accepted{hint_text}; choose one of {choices}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} = {_show(value)}: expected a list")
        item = args[0] if args else Any
        return [_convert(v, item, {}, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} = {_show(value)}: expected a mapping")
        item = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, item, {}, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    return _convert_scalar(value, hint, key)


def _convert_union(value: Any, options: list, key: str) -> Any:
    errors = []
    for opt in options:
        try:
            return _convert(value, opt, {}, key)
        except ConfigError as exc:
            errors.append(str(exc).split(": ", 1)[-1])
    raise ConfigError(f"{key} = {_show(value)}: {' / '.join(errors)}")


def _convert_scalar(value: Any, hint: Any, key: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} = {_show(value)}: expected true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key} = {_show(value)}: expected an integer")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads '1e-3' as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} = {_show(value)}: expected a number")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key} = {_show(value)}: expected a string")
    return value


def _convert_registered(value: Any, registry: Registry, key: str) -> Any:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise ConfigError(f"{key}: expected a mapping with a 'name' (one of: {', '.join(registry.names())})")
    entry = registry.get(str(value["name"]), field=f"{key}.name")
    if entry.config is None:
        raise ConfigError(f"{key}.name = {value['name']!r}: this {registry.kind} takes no options")
    return from_dict(entry.config, value, key)


def _check_bounds(value: Any, meta: typing.Mapping, key: str) -> None:
    if not meta or not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    low, high = meta.get("min"), meta.get("max")
    if low is not None:
        if meta.get("min_exclusive") and not value > low:
            raise ConfigError(f"{key} = {value!r}: must be > {low}{_help(meta)}")
        if value < low:
            raise ConfigError(f"{key} = {value!r}: must be >= {low}{_help(meta)}")
    if high is not None and value > high:
        raise ConfigError(f"{key} = {value!r}: must be <= {high}{_help(meta)}")


def _help(meta: typing.Mapping) -> str:
    text = meta.get("help") if meta else ""
    return f" ({text})" if text else ""


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


# ----------------------------------------------------------------------------- output

def to_dict(cfg: Any) -> Any:
    """A config object as plain data (for YAML dumps and hashing)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def config_hash(cfg: Any) -> str:
    """A short stable hash of the config's plain-data form."""
    blob = json.dumps(to_dict(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def diff_keys(a: Any, b: Any, path: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain-data configs."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += diff_keys(a.get(k), b.get(k), _join(path, str(k)))
        return out
    return [] if a == b else [f"{path}: {a!r} -> {b!r}"]
