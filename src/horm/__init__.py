"""horm: reactive machine-learning interatomic potentials that know their Hessians.

The public API, imported lazily (``import horm`` loads neither torch nor ASE)::

    import horm
    calc = horm.HormCalculator.from_file("run/model.pt")   # ASE calculator with get_hessian
    atoms.calc = calc
    hessian = calc.get_hessian(atoms)                        # (3N, 3N) eV/Å²

    model, info = horm.load_model("run/model.pt", device="cpu", dtype="float64")
    ds = horm.open_dataset("data.hstore")                    # HORM LMDB, horm store or extxyz
    xtb = horm.load_potential("xtb")                         # GFN2-xTB as the same calculator

Units everywhere: eV, Å, eV/Å, eV/Å².
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing alone costs more than the rest

from horm._version import __version__

# name -> module that defines it; resolved on first attribute access (PEP 562)
_LAZY = {
    "HormCalculator": "horm.calculators.potential",
    "load_potential": "horm.calculators.potential",
    "load_model": "horm.models.files",
    "save_model": "horm.models.files",
    "model_info": "horm.models.files",
    "build_model": "horm.models.registry",
    "list_models": "horm.models.registry",
    "open_dataset": "horm.data.io",
    "Sample": "horm.data.sample",
    "get_engine": "horm.label",
    "vibrational_analysis": "horm.hessian.analysis",
    "HormError": "horm.errors",
    "DataError": "horm.errors",
    "DomainError": "horm.errors",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from horm.data.io import open_dataset
    from horm.data.sample import Sample
    from horm.errors import DataError, DomainError, HormError
    from horm.hessian.analysis import vibrational_analysis
    from horm.label import get_engine
    from horm.models.registry import build_model, list_models
    from horm.models.files import load_model, model_info, save_model
    from horm.calculators.potential import HormCalculator, load_potential


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'horm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
