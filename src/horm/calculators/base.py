"""The interface every TS-search stage uses: an ASE calculator that also gives Hessians.

``HessianCalculator`` is an ASE ``Calculator`` (energy in eV, forces in eV/Å) with one
extra method, ``get_hessian(atoms) -> (3N, 3N)`` in eV/Å², index 3·atom + xyz, symmetric.
It has the signature of Sella's ``hessian_function``, so a TS optimisation can pass
``hessian_function=calc.get_hessian`` and have the Hessian recomputed as often as it likes.
Each calculator counts its evaluations (``counts``) and the time spent in them (``seconds``),
so that a run can report its calls per stage and per level of theory. Implementations:
:class:`horm.calculators.potential.HormCalculator` (a horm model, xTB, DFT) and
:class:`horm.calculators.ase_adapter.ASEPotential` (any ASE calculator).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from horm.models.domain import charge_and_multiplicity

__all__ = ["HessianCalculator"]


class HessianCalculator(Calculator):
    """Base class: an ASE calculator with ``get_hessian`` and evaluation counters.

    Subclasses implement ``evaluate(atoms, hessian: bool) -> dict`` returning ``energy``
    (float, eV), ``forces`` ((N, 3), eV/Å) and, if ``hessian``, ``hessian`` ((3N, 3N),
    eV/Å²). ``counts`` holds ``{"energy_forces": n, "hessian": m}``: one call that returns
    a Hessian counts once, under ``hessian``. ``atoms.get_property("hessian")`` (or
    ``calc.get_property("hessian", atoms)``) gives the same (3N, 3N) matrix as ``get_hessian``.
    """

    implemented_properties = ["energy", "forces", "hessian"]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.counts = {"energy_forces": 0, "hessian": 0}
        self.seconds = 0.0  # wall time spent inside evaluate (what a reference's calls cost)
        self._hessian_cache: tuple[tuple, dict[str, Any]] | None = None
        self._prefetched: list[tuple[tuple, dict[str, Any]]] = []

    # -- to implement --------------------------------------------------------------
    def evaluate(self, atoms, hessian: bool) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def evaluate_many(self, atoms_list) -> list[dict[str, Any]] | None:
        """Energies and forces of several geometries at once, or None when this calculator
        cannot batch (the default; then :meth:`prefetch` does nothing)."""
        return None

    def prefetch(self, atoms_list) -> None:
        """Compute energy and forces of ``atoms_list`` in one batched call (a NEB band's
        images) and keep them, so that the per-image ``get_forces`` that follow, at exactly
        these geometries, cost nothing. Each geometry counts as one ``energy_forces`` call."""
        t0 = time.perf_counter()
        outs = self.evaluate_many(list(atoms_list)) if len(atoms_list) > 1 else None
        self.seconds += time.perf_counter() - t0
        self._prefetched = [] if outs is None else [(_state_key(a), o) for a, o in zip(atoms_list, outs)]

    # -- ASE contract --------------------------------------------------------------
    def check_state(self, atoms, tol=1e-15):
        """ASE's checks plus the electronic state: a new charge or multiplicity is a new system."""
        changes = super().check_state(atoms, tol)
        if self.atoms is not None and charge_and_multiplicity(atoms) != charge_and_multiplicity(self.atoms):
            changes = [*changes, "charge"]
        return changes

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if "hessian" in properties:
            self.get_hessian(self.atoms)
            return
        out = self._take_prefetched(self.atoms)
        if out is None:
            t0 = time.perf_counter()
            out = self.evaluate(self.atoms, hessian=False)
            self.seconds += time.perf_counter() - t0
        self.counts["energy_forces"] += 1
        self.results = {"energy": float(out["energy"]),
                        "forces": np.asarray(out["forces"], dtype=float).reshape(-1, 3)}

    def _take_prefetched(self, atoms) -> dict[str, Any] | None:
        key = _state_key(atoms)
        for i, (k, out) in enumerate(self._prefetched):
            if _same_state(k, key):
                return self._prefetched.pop(i)[1]
        return None

    def get_hessian(self, atoms=None) -> np.ndarray:
        """Hessian d²E/dr² at ``atoms``, (3N, 3N) eV/Å², symmetrised as (H + Hᵀ)/2.

        Energy and forces computed alongside are stored as the calculator's current
        results, so a following ``get_forces`` at the same geometry costs nothing.
        """
        if atoms is None:
            atoms = self.atoms
        key = _state_key(atoms)
        if self._hessian_cache is None or not _same_state(self._hessian_cache[0], key):
            t0 = time.perf_counter()
            out = self.evaluate(atoms, hessian=True)
            self.seconds += time.perf_counter() - t0
            self.counts["hessian"] += 1
            n3 = 3 * len(atoms)
            h = np.asarray(out["hessian"], dtype=float).reshape(n3, n3)
            self._hessian_cache = (key, {"energy": float(out["energy"]), "hessian": 0.5 * (h + h.T),
                                         "forces": np.asarray(out["forces"], dtype=float).reshape(-1, 3)})
        self.atoms = atoms.copy()
        self.results = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self._hessian_cache[1].items()}
        return self._hessian_cache[1]["hessian"].copy()

    @property
    def is_reference(self) -> bool:
        """True for a level of theory (xTB, DFT, a plain ASE calculator), False for a trained
        model: a run's ``reference_calls`` counts the calls of reference-level calculators only."""
        return False

    def call_counts(self) -> dict:
        """``{"energy_forces": n, "hessian": m, "seconds": s}`` so far (with any extra counters)."""
        return {**{k: int(v) for k, v in self.counts.items()}, "seconds": round(float(self.seconds), 3)}

    def total_calls(self) -> int:
        return int(self.counts["energy_forces"] + self.counts["hessian"])


def _state_key(atoms) -> tuple:
    """What a result depends on: numbers, positions, charge and multiplicity."""
    return (np.array(atoms.numbers), np.array(atoms.positions, dtype=float), charge_and_multiplicity(atoms))


def _same_state(a: tuple, b: tuple) -> bool:
    return a[0].shape == b[0].shape and np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
