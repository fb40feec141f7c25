"""A model's domain: which structures it may be asked about, and the one-line refusal for the rest.

A trained potential knows only what it was trained on. The model file stores the training
elements (:mod:`horm.models.files`); every model in horm is trained on isolated, neutral,
closed-shell molecules. :func:`check_structure` refuses, with one :class:`~horm.errors.DomainError`
line, a structure that has

- an element outside the training elements (an unknown element set skips this check),
- a periodic cell (``atoms.pbc.any()``): the models have no periodic images,
- a charge other than 0 (``atoms.info["charge"]``), or a spin multiplicity other than 1
  (``atoms.info["multiplicity"]``, or ``atoms.info["spin"]`` read as the multiplicity 2S+1,
  the fairchem convention).

Callers offer an explicit opt-out (``check_domain=False`` on the calculator).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
from ase.data import chemical_symbols

from horm.errors import DomainError

OPT_OUT = "pass check_domain=False to compute anyway"


def _symbols(zs: Iterable[int]) -> str:
    return ", ".join(chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z={z}" for z in zs)


def charge_and_multiplicity(atoms) -> tuple[int, int]:
    """(charge, multiplicity) from ``atoms.info``; defaults 0 and 1."""
    info = atoms.info or {}
    mult = info.get("multiplicity", info.get("spin", 1))
    try:
        return int(info.get("charge", 0)), int(mult)
    except (TypeError, ValueError):
        raise DomainError(f"atoms.info charge={info.get('charge')!r} multiplicity={mult!r}: "
                          f"expected integers") from None


def check_structure(atoms, elements: Iterable[int] | None, name: str = "model",
                    electronic_state: bool = True) -> None:
    """Raise DomainError when ``atoms`` lies outside the domain described in the module docstring.

    ``elements``: the training elements (None: unknown, not checked). ``electronic_state``: also
    refuse non-default charge/multiplicity (False for engines, which honour them).
    """
    numbers = np.asarray(atoms.numbers, dtype=int)
    if elements is not None:
        allowed = {int(z) for z in elements}
        bad = sorted(set(numbers.tolist()) - allowed)
        if bad:
            raise DomainError(f"{name}: element(s) {_symbols(bad)} outside the training elements "
                              f"{_symbols(sorted(allowed))}; {OPT_OUT}")
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any():
        raise DomainError(f"{name}: periodic cell (pbc={pbc.tolist()}) but the model is for isolated "
                          f"molecules; set atoms.pbc = False for a molecule, or {OPT_OUT}")
    if electronic_state:
        charge, mult = charge_and_multiplicity(atoms)
        if charge != 0 or mult != 1:
            raise DomainError(f"{name}: charge {charge}, multiplicity {mult} but the model was trained on "
                              f"neutral singlet molecules; {OPT_OUT}")


def _method(level_of_theory: str) -> str:
    """The method part of a level-of-theory string: "GFN2-xTB (tblite), T_el=..." -> "gfn2-xtb"."""
    head = str(level_of_theory).strip().split(" ")[0].split("(")[0]
    return head.rstrip(",;").lower()


def theory_mismatch(model_level: str | None, data_level: str | None) -> str | None:
    """A one-line warning when a model's and a dataset's levels of theory name different methods.

    Unknown levels (None, "", "unknown") give no warning: there is nothing to compare.
    """
    known = [lv for lv in (model_level, data_level) if lv and str(lv).strip().lower() != "unknown"]
    if len(known) < 2 or _method(model_level) == _method(data_level):
        return None
    return (f"the model was trained on {model_level!s} labels but the data are {data_level!s}: "
            f"energies, forces and Hessians are not comparable across levels of theory")
