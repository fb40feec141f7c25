"""Typed settings from YAML or ``key=value`` strings: coerce a value to a dataclass field's type.

Shared by the training config and the TS-search settings. Every bad value is a one-line
``UsageError`` naming the key and what is valid; numbers must be finite.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal

import yaml

from horm.errors import UsageError


def parse_scalar(raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() != "" else None
    except yaml.YAMLError:
        return raw


def field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(inner[0], value, key)
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
    return cls(**{k: coerce(types_[k], v, f"{where}.{k}") for k, v in d.items()})
