"""Each option declared once: its type (the annotation), its range or choices, its help, and
(training options) the consumer that takes it. Everything that talks about an option reads this.

    lr: float = option(0.002, "Adam's learning rate of both players", gt=0, to="opt")

- ``check(obj)``: the one check of a config dataclass (``__post_init__``): the declared types
  (``option_types.check_types``), every float finite, then each field's range, choices and own
  check; cross-field rules stay in the dataclass's ``validate`` after it;
- ``allowed(cls, name)``: the allowed values in words ("> 0", "in [0, 1)", "one of fp32, bf16"),
  the same words the errors use; ``help_table(cls)``: the ``vitgan train --help`` listing;
- ``coerced(cls, pairs)``: ``--set key=value`` text as the declared types (an error names the
  allowed values and what the option is), ``apply_overrides`` / ``parse_set`` around it;
- ``consumer_kwargs(obj, to)``: the fields declared ``to=...`` as that consumer's keyword
  arguments (``arg=`` renames one), so a new option is its declaration and its consumer's
  parameter, nothing between.

Imports nothing of vitgan but errors and option_types.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Callable

from vitgan.errors import OptionError
from vitgan.option_types import check_types, coerce

__all__ = ["Spec", "option", "spec", "check", "check_finite", "allowed", "help_table", "consumer_kwargs",
           "coerced", "apply_overrides", "parse_set"]


@dataclass(frozen=True)
class Spec:
    """What one option allows. ``gt`` / ``ge`` / ``lt`` / ``le``: bounds; ``choices``: the values;
    ``check``: a callable raising OptionError for what bounds cannot say (``words``: what it
    allows, for --help); ``why``: said after a range error; ``to`` / ``arg``: the consumer and
    its parameter's name (default: the option's); ``ablation``: one of the paper's ablation
    switches (``config.ABLATIONS``)."""

    help: str
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple | None = None
    check: Callable | None = None
    words: str | None = None
    why: str | None = None
    to: str | None = None
    arg: str | None = None
    ablation: bool = False


def option(default=dataclasses.MISSING, help: str = "", *, factory=dataclasses.MISSING, **kw) -> dataclasses.Field:
    """A dataclass field carrying its ``Spec`` (``default`` or ``factory``, as ``field`` takes)."""
    return dataclasses.field(default=default, default_factory=factory, metadata={"spec": Spec(help, **kw)})


def spec(f: dataclasses.Field) -> Spec:
    return f.metadata.get("spec") or Spec("")


def check_finite(obj) -> None:
    """Every float field is a finite number. Before the ranges: NaN fails every comparison, so
    ``x < 0`` style checks would let it through (and inf past ``x > 0``)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise OptionError(f"{f.name}={value} is not a finite number; give a finite value")


def check(obj) -> None:
    """The declared types, finiteness, then every field's declared range, choices and check."""
    check_types(obj)
    check_finite(obj)
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        s, value = spec(f), getattr(obj, f.name)
        if value is None:  # check_types let it through: the type allows null
            continue
        if s.choices is not None and value not in s.choices:
            raise OptionError(f"{f.name}={value!r} is not valid; choose one of "
                              + ", ".join(str(c) for c in s.choices))
        if not _in_range(value, s):
            why = f" ({s.why or s.help})" if s.why or s.help else ""
            raise OptionError(f"{f.name} must be {_words(s, hints[f.name])}, got {value}{why}")
        if s.check is not None:
            s.check(value)


def _in_range(v, s: Spec) -> bool:
    return ((s.gt is None or v > s.gt) and (s.ge is None or v >= s.ge)
            and (s.lt is None or v < s.lt) and (s.le is None or v <= s.le))


def _num(v) -> str:
    return f"{v:g}"


def _words(s: Spec, annotation) -> str:
    """The allowed values in words, as the errors and --help say them."""
    optional = type(None) in typing.get_args(annotation)
    base = _base(annotation)
    if s.choices is not None:
        text = "one of " + ", ".join(str(c) for c in s.choices)
    elif base is int and (s.ge == 1 or s.gt == 0) and s.lt is None and s.le is None:
        text = "a positive integer"
    elif (s.ge is not None or s.gt is not None) and (s.lt is not None or s.le is not None):
        lo, hi = (s.ge if s.gt is None else s.gt), (s.le if s.lt is None else s.lt)
        text = f"in {'[' if s.gt is None else '('}{_num(lo)}, {_num(hi)}{']' if s.lt is None else ')'}"
    else:
        bounds = [(op, b) for op, b in ((">", s.gt), (">=", s.ge), ("<", s.lt), ("<=", s.le)) if b is not None]
        text = " and ".join(f"{op} {_num(b)}" for op, b in bounds)
    if s.words:
        text = f"{text}, {s.words}" if text else s.words
    text = text or {bool: "true or false", str: "any text", list: "a comma list", int: "any whole number",
                    float: "any number"}[base]
    return text + " or none" if optional else text


def _base(annotation):
    if typing.get_origin(annotation) is list:
        return list
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def allowed(cls, name: str) -> str:
    """The allowed values of option ``name`` of dataclass ``cls``, in words."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return _words(spec(f), typing.get_type_hints(cls)[name])


def _default(f: dataclasses.Field):
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if isinstance(value, list):
        return ",".join(map(str, value)) or '""'
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def help_table(cls, title: str) -> str:
    """``title`` then one line an option: name, default, what it is (allowed values)."""
    hints = typing.get_type_hints(cls)
    rows = [(f.name, _default(f), _words(spec(f), hints[f.name]), spec(f).help) for f in dataclasses.fields(cls)]
    w = [max(len(r[i]) for r in rows) for i in range(2)]
    return "\n".join([title] + [f"  {n:<{w[0]}}  {d:<{w[1]}}  {h} ({a})" for n, d, a, h in rows])


def consumer_kwargs(obj, to: str) -> dict:
    """The fields of ``obj`` declared ``to=to``, as that consumer's keyword arguments."""
    return {spec(f).arg or f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if spec(f).to == to}


# ------------------------------------------------------------------------------ --set
def coerced(cls, pairs: dict[str, str], what: str = "option") -> dict:
    """``--set`` pairs of dataclass ``cls`` as its declared types, or OptionError (an unknown key
    lists the valid ones; a value of the wrong type says what the option allows)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    out = {}
    for key, text in pairs.items():
        if key not in fields:
            raise OptionError(f"unknown {what} {key!r}; valid keys: {', '.join(fields)}")
        try:
            out[key] = coerce(text, hints[key], key)
        except OptionError as err:
            raise OptionError(f"{err}; {key} is {_words(spec(fields[key]), hints[key])}: "
                              f"{spec(fields[key]).help}") from None
    return out


def apply_overrides(obj, pairs: dict[str, str], what: str = "option"):
    """A copy of dataclass ``obj`` with the ``--set`` pairs applied (made, so checked, once)."""
    return dataclasses.replace(obj, **coerced(type(obj), pairs, what))


def parse_set(items: list[str] | None) -> dict[str, str]:
    """Parse ``["key=value", ...]`` from ``--set`` into a dict, or raise OptionError."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise OptionError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out
