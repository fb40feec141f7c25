"""Typed settings from YAML or ``key=value`` strings: coerce a value to a dataclass field's type.

Shared by the training config and the TS-search settings. Every bad value is a one-line
``UsageError`` naming the key and what is valid; numbers must be finite.

Numeric ranges are declared once, next to the field: ``n_hr: int = ranged(1, "[1, 30000]")``.
The range text is interval notation (``[a, b]``, ``(a, b)``, ``[a, inf)``) and is what an
error prints: ``loss.n_hr=0 is not valid; valid: [1, 30000]``. :func:`coerce` checks it
when a value is set, :func:`check_fields` re-checks every field of a built dataclass.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal

import yaml

from horm.errors import UsageError


class Range:
    """A numeric interval, written and printed in interval notation: ``[0, 1)``, ``(0, inf)``."""

    def __init__(self, text: str):
        t = self.text = text.strip()
        parts = t[1:-1].split(",")
        if len(t) < 5 or t[0] not in "[(" or t[-1] not in "])" or len(parts) != 2:
            raise ValueError(f"range {text!r}: expected interval notation such as [0, 1)")
        self.lo, self.hi = float(parts[0]), float(parts[1])
        self.lo_closed, self.hi_closed = t[0] == "[", t[-1] == "]"

    def __contains__(self, x) -> bool:
        return ((self.lo <= x) if self.lo_closed else (self.lo < x)) and \
            ((x <= self.hi) if self.hi_closed else (x < self.hi))

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Range({self.text!r})"


def check_choice(value: Any, options: Any, what: str) -> None:
    """``value`` against the ``Literal`` type ``options``: a one-line UsageError naming what is valid."""
    valid = typing.get_args(options)
    if value not in valid:
        raise UsageError(f"{what} {value!r} is not valid; choose one of {', '.join(map(str, valid))}")


def ranged(default: Any, text: str, **kw):
    """A dataclass field whose value must lie in the interval ``text`` (None passes where the type allows)."""
    return dataclasses.field(default=default, metadata={"range": Range(text)}, **kw)


def field_range(cls, name: str) -> Range | None:
    """The declared :class:`Range` of field ``name`` of dataclass ``cls`` (None: none declared)."""
    f = {f.name: f for f in dataclasses.fields(cls)}.get(name)
    return f.metadata.get("range") if f is not None else None


def check_fields(obj, where: str) -> None:
    """Re-check the type and range of every field of the dataclass ``obj`` (nested ones too), in
    place: a value assigned directly, past :func:`coerce`, is held to the same rules."""
    types_ = field_types(type(obj))
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(value):
            check_fields(value, key)
        else:
            setattr(obj, f.name, coerce(types_[f.name], value, key, f.metadata.get("range")))


def parse_scalar(raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() != "" else None
    except yaml.YAMLError:
        return raw


def field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def coerce(tp: Any, value: Any, key: str, rng: Range | None = None) -> Any:
    """``value`` as type ``tp``, inside ``rng`` when given; a one-line UsageError otherwise."""
    out = _coerce(tp, value, key)
    if rng is not None and isinstance(out, (int, float)) and not isinstance(out, bool) and out not in rng:
        optional = type(None) in typing.get_args(tp)
        raise UsageError(f"{key}={value!r} is not valid; valid: {rng}{' or null' if optional else ''}")
    return out


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
    if origin is Literal:
        if value not in args:
            raise UsageError(f"{key}={value!r} is not valid; valid: {', '.join(map(str, args))}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UsageError(f"{key}={value!r} is not valid; valid: true, false")
    if tp is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise UsageError(f"{key}={value!r} is not valid; expected an integer")
        return int(value)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-3" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{key}={value!r} is not valid; expected a number")
        if not math.isfinite(value):
            raise UsageError(f"{key}={value!r} is not valid; expected a finite number")
        return float(value)
    if tp is str:
        if value is None or isinstance(value, (dict, list)):
            raise UsageError(f"{key}={value!r} is not valid; expected a string")
        return str(value)
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise UsageError(f"{key}={value!r} is not valid; expected a mapping")
        return dict(value)
    return value


def from_dict(cls, d: Any, where: str):
    """Build dataclass ``cls`` from a mapping, checking every key and value type."""
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise UsageError(f"{where}: expected a mapping of {', '.join(f.name for f in dataclasses.fields(cls))}")
    valid = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(map(str, set(d) - valid))
    if bad:
        raise UsageError(f"{where}: unknown setting(s) {', '.join(bad)}; valid: {', '.join(sorted(valid))}")
    types_ = field_types(cls)
    return cls(**{k: coerce(types_[k], v, f"{where}.{k}", field_range(cls, k)) for k, v in d.items()})
