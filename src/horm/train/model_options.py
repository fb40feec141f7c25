"""``model.name``, ``model.preset`` and ``model.overrides.X`` checked when the training config is built.

The preset's fields plus the overrides are coerced to the model's own config dataclass with
:func:`horm.settings.from_dict` (the same typed-settings core as the training config): an
unknown field, a value of the wrong type (``hidden_channels=wide``, ``num_layers=1.5``), a
non-finite number (``cutoff=nan``), a value outside a range the model's config declares, or one
its ``__post_init__`` refuses, is a one-line :class:`~horm.errors.UsageError` before any data
is read. Nothing is built: only the config dataclass is. A backbone (``hessian_head``'s
``backbone``, ``backbone_preset``, ``backbone_overrides``) is checked the same way.
"""

from __future__ import annotations

from typing import Any

from horm.errors import UsageError
from horm.settings import from_dict


def check_model_options(name: str, preset: str, overrides: dict[str, Any], where: str = "model.overrides") -> Any:
    """The config dataclass that ``build_model(name, preset, **overrides)`` would build, checked."""
    from horm.models.registry import model_class

    cls = model_class(name)
    if preset not in cls.presets:
        raise UsageError(f"unknown preset {preset!r} for model {name!r}; valid: {', '.join(cls.presets)}")
    if not isinstance(overrides, dict):
        raise UsageError(f"{where}={overrides!r} is not valid; expected a mapping of {name} config fields")
    cfg = from_dict(cls.config_cls, {**cls.presets[preset], **overrides}, where)
    backbone = getattr(cfg, "backbone", None)
    if isinstance(backbone, str) and hasattr(cfg, "backbone_overrides"):
        check_model_options(backbone, getattr(cfg, "backbone_preset", "tiny"), cfg.backbone_overrides,
                            f"{where}.backbone_overrides")
    return cfg


def check_model_section(model) -> None:
    """Check a :class:`horm.train.config.ModelSection` (name, preset, overrides)."""
    try:
        check_model_options(model.name, model.preset, model.overrides)
    except TypeError as exc:  # a config __post_init__ comparing a value of a type it did not expect
        raise UsageError(f"model.overrides {model.overrides}: {exc}") from None
