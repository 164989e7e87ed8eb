"""``--set key=value`` text turned into typed dataclass fields: coerce, apply_overrides, parse_set.

Used by vitgan.config (ModelConfig) and vitgan.train.options (TrainConfig); imports no other part of
vitgan but errors, so both can use it without an import circle.
"""

from __future__ import annotations

import dataclasses
import types
import typing

from vitgan.errors import OptionError


def coerce(value: str, annotation, key: str):
    """Turn the text of ``--set key=value`` into the field's type, or raise OptionError."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        if value.lower() in ("none", "null", ""):
            return None
        annotation = args[0]
    try:
        if annotation is bool:
            low = value.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if annotation in (int, float, str):
            return annotation(value)
        if typing.get_origin(annotation) is list or annotation is list:
            inner = (typing.get_args(annotation) or (str,))[0]
            return [coerce(v, inner, key) for v in value.split(",") if v]
    except ValueError:
        name = getattr(annotation, "__name__", str(annotation))
        raise OptionError(f"{key}={value!r} is not a valid {name}") from None
    return value


def apply_overrides(obj, pairs: dict[str, str], what: str = "option"):
    """Return a copy of dataclass ``obj`` with string values ``pairs`` coerced and applied."""
    fields = {f.name: f for f in dataclasses.fields(obj)}
    hints = typing.get_type_hints(type(obj))
    changes = {}
    for key, text in pairs.items():
        if key not in fields:
            raise OptionError(f"unknown {what} {key!r}; valid keys: {', '.join(fields)}")
        changes[key] = coerce(text, hints.get(key, str), key)
    return dataclasses.replace(obj, **changes)


def parse_set(items: list[str] | None) -> dict[str, str]:
    """Parse ``["key=value", ...]`` from ``--set`` into a dict, or raise OptionError."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise OptionError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


__all__ = ["coerce", "apply_overrides", "parse_set", "field_names"]
