"""Labelling engines (energy, forces, Hessian) behind one protocol (:mod:`horm.label.engine`).

:func:`get_engine` builds one by name from a lazy ``name -> "module:Class"`` table, so the
protocol module imports no engine and asking for xTB does not import PySCF.
"""

from __future__ import annotations

import dataclasses
import importlib

from horm.errors import UsageError
from horm.label.engine import ENGINE_NAMES, LABELS, Engine, EngineName

__all__ = ["ENGINES", "ENGINE_NAMES", "LABELS", "Engine", "get_engine"]

#: engine name -> "module:Class" (imported on first use)
ENGINES: dict[str, str] = {"xtb": "horm.label.xtb:XtbEngine", "dft": "horm.label.pyscf:DftEngine"}


def get_engine(name: EngineName, **settings) -> Engine:
    """Build an engine by name with its settings (the fields of its dataclass).

    ``get_engine("xtb", electronic_temperature=300.0)``, ``get_engine("dft", density_fit=False)``.
    An unknown name or setting is a UsageError listing the valid ones.
    """
    if name not in ENGINES:
        raise UsageError(f"engine {name!r}: expected one of {', '.join(ENGINE_NAMES)}")
    module, _, attr = ENGINES[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    valid = [f.name for f in dataclasses.fields(cls)]
    bad = sorted(set(settings) - set(valid))
    if bad:
        raise UsageError(f"engine {name!r}: unknown setting(s) {', '.join(bad)}; "
                         f"valid: {', '.join(valid)}")
    return cls(**settings)
