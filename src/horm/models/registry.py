"""The model registry: architecture name -> :class:`~horm.models.base.Potential` subclass.

Built-in architectures are a lazy table of ``name -> "module:Class"`` (:data:`BUILTIN`): a name
is imported only when it is built or described, so ``base.py`` imports no model and building a
LEFTNet does not import EquiformerV2. A model written outside ``horm`` registers itself with
:func:`register_model` when its module is imported; a built-in module's decorator must name the
class its table entry names (checked, so the table and the code cannot drift apart).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any, Callable

from horm.errors import UsageError
from horm.settings import coerce, field_types

if TYPE_CHECKING:  # pragma: no cover
    from horm.models.base import Potential

__all__ = ["BUILTIN", "ModelInfo", "build_model", "build_model_from_config", "describe_model",
           "list_models", "model_class", "register_model"]

#: name -> "module:Class" of every architecture shipped with horm (imported on first use).
BUILTIN: dict[str, str] = {
    "leftnet": "horm.models.leftnet:LEFTNet",
    "leftnet-df": "horm.models.leftnet:LEFTNetDF",
    "alphanet": "horm.models.alphanet:AlphaNet",
    "equiformer_v2": "horm.models.equiformer_v2:EquiformerV2",
    "hessian_head": "horm.models.hessian_head:HessianHead",
    "horm-leftnet": "horm.models.published.leftnet:PublishedLEFTNet",
    "horm-leftnet-df": "horm.models.published.leftnet:PublishedLEFTNetDF",
    "horm-alphanet": "horm.models.published.alphanet:PublishedAlphaNet",
    "horm-equiformer_v2": "horm.models.published.equiformer_v2:PublishedEquiformerV2",
    "hip-equiformer_v2": "horm.models.published.hip:HIPEquiformerV2",
}

_REGISTERED: dict[str, type["Potential"]] = {}


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What ``horm model list`` prints about an architecture (no weights are built)."""

    name: str
    forces_mode: str
    hessian_mode: str
    presets: tuple[str, ...]
    published: bool

    def line(self, width: int = 0) -> str:
        return (f"{self.name:{width}s}  forces={self.forces_mode:8s} hessian={self.hessian_mode:8s} "
                f"presets={','.join(self.presets)}")


def register_model(name: str) -> Callable[[type["Potential"]], type["Potential"]]:
    """Class decorator: make a Potential subclass buildable by ``name``."""

    def deco(cls: type["Potential"]) -> type["Potential"]:
        where = BUILTIN.get(name)
        if where is not None and where != f"{cls.__module__}:{cls.__qualname__}":
            raise ValueError(f"model name {name!r} is horm's built-in {where}, not {cls.__module__}.{cls.__qualname__}")
        if name in _REGISTERED and _REGISTERED[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered")
        cls.name = name
        _REGISTERED[name] = cls
        return cls

    return deco


def list_models() -> list[str]:
    """Every buildable architecture name: the built-in ones and any registered since."""
    return sorted(set(BUILTIN) | set(_REGISTERED))


def model_class(name: str) -> type["Potential"]:
    """The Potential subclass registered as ``name`` (imported now if it is built in)."""
    if not isinstance(name, str) or (name not in BUILTIN and name not in _REGISTERED):
        raise UsageError(f"unknown model {name!r}; valid: {', '.join(list_models())}")
    if name not in _REGISTERED:
        module, _, attr = BUILTIN[name].partition(":")
        cls = getattr(importlib.import_module(module), attr)
        if _REGISTERED.get(name) is not cls:  # pragma: no cover - a module without its decorator
            raise RuntimeError(f"{BUILTIN[name]} did not register itself as {name!r}")
    return _REGISTERED[name]


def describe_model(name: str) -> ModelInfo:
    """Forces and Hessian modes and presets of ``name``, from its class (nothing is built)."""
    cls = model_class(name)
    return ModelInfo(name, _mode(cls.forces_mode), _mode(cls.hessian_mode), tuple(cls.presets),
                     published=cls.__module__.startswith("horm.models.published."))


def _mode(value: Any) -> str:
    """A class-level mode, or "per-model" where each instance decides (HIP's Hessian: head or Jacobian)."""
    return value if isinstance(value, str) else "per-model"


def _make_config(cls: type["Potential"], values: dict[str, Any]):
    """The config dataclass of ``cls`` from ``values``: unknown keys, wrong types and non-finite
    numbers are a UsageError naming the field (:func:`horm.settings.coerce`)."""
    valid = [f.name for f in dataclasses.fields(cls.config_cls)]
    bad = sorted(map(str, set(values) - set(valid)))
    if bad:
        raise UsageError(f"unknown option(s) {', '.join(bad)} for model {cls.name!r}; valid: {', '.join(valid)}")
    types_ = field_types(cls.config_cls)
    return cls.config_cls(**{k: coerce(types_[k], v, f"model.{k}") for k, v in values.items()})


def build_model(name: str, preset: str = "tiny", **overrides) -> "Potential":
    """Build a registered model from a preset ("tiny" | "small" | "paper" | "horm") plus field overrides."""
    cls = model_class(name)
    if preset not in cls.presets:
        raise UsageError(f"unknown preset {preset!r} for model {name!r}; valid: {', '.join(cls.presets)}")
    return cls(_make_config(cls, {**cls.presets[preset], **overrides}))


def build_model_from_config(config: dict[str, Any]) -> "Potential":
    """Rebuild the architecture saved as ``model.config`` (weights come from the state dict)."""
    config = dict(config)
    if "name" not in config:
        raise UsageError("model config has no 'name' field; valid names: " + ", ".join(list_models()))
    cls = model_class(config.pop("name"))
    return cls(_make_config(cls, config))
