"""The declared types of the option dataclasses, checked on values as JSON spells them.

``--set key=value`` text is turned into a field's type by ``coerce`` (below; ``option_spec.coerced``
applies it to every pair); values that arrive
already parsed (a hand-edited ``training_options.json``, a checkpoint's model config, a
``TrainConfig(...)`` call) are checked against the same declarations (the dataclass
annotations) here, before any range check: ``"hflip": "no"`` would be truthy and ``"lr": "fast"``
fails every comparison with a traceback. Imports nothing of vitgan but errors.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing

from vitgan.errors import OptionError

__all__ = ["check_types", "json_kind", "coerce", "field_names"]


def check_types(obj) -> None:
    """Every field of a config dataclass holds a value of its declared type, as JSON spells it
    (a hand-edited training_options.json or a checkpoint's config; ``--set`` text is coerced to
    the same declarations by ``coerce``): a whole number for int (not true / false), any number
    for float (stored as float), only true / false for bool, null only where the type allows it.
    Run first: ``"hflip": "no"`` is truthy and ``"lr": "fast"`` fails every comparison."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, annotation = getattr(obj, f.name), hints[f.name]
        ok, typed = _typed(value, annotation)
        if not ok:
            raise OptionError(f"{f.name}={json.dumps(value)} is {json_kind(value)}, not {_expected(annotation)}")
        if typed is not value:
            setattr(obj, f.name, typed)


def _typed(value, annotation) -> tuple[bool, object]:
    """(does ``value`` fit ``annotation``, the value to store: an int for a float field as float)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        if value is None:
            return True, None
        annotation = args[0]
    if typing.get_origin(annotation) is list:
        inner = typing.get_args(annotation)[0]
        return isinstance(value, list) and all(_typed(v, inner) == (True, v) for v in value), value
    if isinstance(value, bool) or annotation is bool:
        return isinstance(value, bool) and annotation is bool, value
    if annotation is float and isinstance(value, (int, float)):
        return True, float(value)
    return isinstance(value, annotation), value


def json_kind(value) -> str:
    kinds = {type(None): "null", bool: "true/false", int: "a whole number", float: "a number",
             str: "a string", list: "a list", dict: "an object"}
    return kinds.get(type(value), type(value).__name__)


def _expected(annotation) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return _expected(args[0]) + " or null"
    if typing.get_origin(annotation) is list:
        return "a list of " + {str: "strings"}.get(typing.get_args(annotation)[0], "values")
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}[annotation]


# ------------------------------------------------------------------------------ overrides
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


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]
