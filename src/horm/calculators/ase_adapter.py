"""Any ASE calculator as a proposer or a reference: ORCA, Q-Chem, Gaussian, a foundation MLIP.

``ASEPotential(calc)`` wraps a plain ASE ``Calculator`` (energy in eV, forces in eV/Å) as a
:class:`~horm.calculators.base.HessianCalculator`. Its Hessian is the calculator's own
when it has one (``get_hessian(atoms)``, or ``hessian`` among its ``implemented_properties``),
otherwise a central finite difference of its forces: H[:, 3a+k] = −(F(x + h e) − F(x − h e)) / 2h,
symmetrised, in eV/Å², with step ``fd_step`` (Å). Such a Hessian counts as one ``hessian``
call and its 6N force evaluations count under ``hessian_force_calls``, so a record says both.

``load_ase_spec("ase:package.module:factory", kwargs)`` imports ``factory`` (a class or a
function returning a calculator) and calls it with ``kwargs`` (a dict, e.g. read from a small
YAML or JSON file by :func:`read_kwargs`). A spec that does not import or build gives one
UsageError line.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from horm.calculators.base import HessianCalculator
from horm.errors import UsageError

PREFIX = "ase:"
FD_STEP = 5e-3  # Å: the central-difference step; SCF noise makes much smaller steps unsafe


class ASEPotential(HessianCalculator):
    """A plain ASE calculator behind the HessianCalculator interface (see the module docstring).

    calc: the ASE calculator; name: the label records carry; fd_step: the finite-difference
    step in Å for a calculator without a Hessian; reference: whether its calls count as
    reference-level (True: a level of theory; False for an ML calculator used as a proposer).
    """

    def __init__(self, calc, name: str = "", fd_step: float = FD_STEP, reference: bool = True, **kwargs):
        super().__init__(**kwargs)
        if not (np.isfinite(fd_step) and 0 < fd_step < 0.1):
            raise UsageError(f"fd_step={fd_step!r}: expected a step in (0, 0.1) Å")
        self.inner = calc
        self.potential = calc
        self.potential_name = name or type(calc).__name__
        self.fd_step = float(fd_step)
        self._reference = bool(reference)
        self.counts["hessian_force_calls"] = 0
        self.has_hessian = hasattr(calc, "get_hessian") or "hessian" in getattr(calc, "implemented_properties", ())
        self.level_of_theory = self.potential_name

    @property
    def is_reference(self) -> bool:
        return self._reference

    def _energy_forces(self, atoms) -> tuple[float, np.ndarray]:
        a = atoms.copy()
        a.calc = self.inner
        e = float(a.get_potential_energy())
        f = np.asarray(a.get_forces(), dtype=float).reshape(-1, 3)
        if not (np.isfinite(e) and np.all(np.isfinite(f))):
            raise UsageError(f"{self.potential_name}: non-finite energy or forces")
        return e, f

    def evaluate(self, atoms, hessian: bool) -> dict[str, Any]:
        e, f = self._energy_forces(atoms)
        out: dict[str, Any] = {"energy": e, "forces": f}
        if hessian:
            out["hessian"] = self._own_hessian(atoms) if self.has_hessian else self.fd_hessian(atoms)
        return out

    def _own_hessian(self, atoms) -> np.ndarray:
        a = atoms.copy()
        a.calc = self.inner
        h = self.inner.get_hessian(a) if hasattr(self.inner, "get_hessian") else self.inner.get_property("hessian", a)
        return np.asarray(h, dtype=float).reshape(3 * len(atoms), 3 * len(atoms))

    def fd_hessian(self, atoms) -> np.ndarray:
        """Central finite-difference Hessian of the forces (3N, 3N), eV/Å²; 6N force calls."""
        n3 = 3 * len(atoms)
        h = np.zeros((n3, n3))
        x0 = np.array(atoms.positions, dtype=float)
        for col in range(n3):
            forces = []
            for sign in (1.0, -1.0):
                a = atoms.copy()
                x = x0.copy()
                x.reshape(-1)[col] += sign * self.fd_step
                a.positions = x
                forces.append(self._energy_forces(a)[1].reshape(-1))
                self.counts["hessian_force_calls"] += 1
            h[:, col] = -(forces[0] - forces[1]) / (2 * self.fd_step)
        return 0.5 * (h + h.T)


def read_kwargs(path) -> dict:
    """Keyword arguments for a calculator factory from a small YAML or JSON file (a mapping)."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{p}: cannot read calculator options ({type(exc).__name__})") from None
    if len(text) > 1_000_000:
        raise UsageError(f"{p}: calculator options larger than 1 MB")
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{p}: not YAML or JSON ({str(exc).splitlines()[0]})") from None
    if d is None:
        return {}
    if not isinstance(d, dict) or not all(isinstance(k, str) for k in d):
        raise UsageError(f"{p}: expected a mapping of keyword arguments, got {type(d).__name__}")
    return d


def load_ase_spec(spec: str, kwargs: dict | None = None, reference: bool = True) -> ASEPotential:
    """``ase:package.module:factory`` → ASEPotential over ``factory(**kwargs)``."""
    body = spec[len(PREFIX):] if spec.startswith(PREFIX) else spec
    mod_name, sep, attr = body.partition(":")
    if not sep or not mod_name or not attr.isidentifier():
        raise UsageError(f"calculator spec {spec!r}: expected ase:package.module:factory")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise UsageError(f"calculator spec {spec!r}: cannot import {mod_name} ({exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError(f"calculator spec {spec!r}: {mod_name} has no callable {attr}")
    try:
        calc = factory(**(kwargs or {}))
    except Exception as exc:
        raise UsageError(f"calculator spec {spec!r}: {attr}(**kwargs) failed: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not (hasattr(calc, "get_potential_energy") or hasattr(calc, "calculate")):
        raise UsageError(f"calculator spec {spec!r}: {attr}() returned {type(calc).__name__}, not an ASE calculator")
    return ASEPotential(calc, name=spec, reference=reference)
