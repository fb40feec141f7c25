"""``xtb`` engine: GFN2-xTB through tblite's Python API.

Energy and the analytic gradient come straight from ``tblite.interface.Calculator``
(Hartree, Hartree/Bohr, converted here with :mod:`horm.units`). tblite has no analytic
Hessian, so the Hessian is a **central difference of analytic gradients**:

    H[:, k] = (g(r + h e_k) − g(r − h e_k)) / (2h),   then  H ← (H + Hᵀ)/2,

6N gradient calls per geometry, each SCF restarted from the converged wavefunction of
the undisplaced geometry. Step and SCF accuracy were chosen by measurement on HORM
geometries (8 and 15 atoms), against a reference at h = 0.0025 Å and 1e-4 accuracy:

  - truncation error grows as h²: h = 0.005 Å differs from h = 0.0025 Å by up to
    6.5e-3 eV/Å² (MAE ~2e-4), h = 0.01 Å by 3.3e-2, h = 0.02 Å by 0.14;
  - SCF noise grows as 1/h: at tblite's default accuracy (1.0) it reaches 0.07–0.18
    eV/Å² at h ≤ 0.0025 Å, at accuracy 0.01 it is ≤ 6e-4 eV/Å² at h = 0.0025 Å.

So the default is ``hessian_step = 0.0025`` Å (≈ 0.0047 Bohr) with ``hessian_accuracy =
0.01`` (the Hessian's gradients, and the energy/forces returned with it, use tblite
thresholds 100× tighter than its default): estimated error ≲ 2e-3 eV/Å² max, ~1e-4 MAE,
at the same cost as the loose setting (~0.4 s for 8 atoms, ~2 s for 15 atoms, 1 core).

A non-converged SCF raises ``TBLiteRuntimeError`` inside tblite; the engine turns it into
:class:`horm.errors.LabelError`. With ``retry=True`` (default) it first tries once more
at ``retry_temperature`` (1000 K electronic smearing, which rescues near-degenerate
stretched-bond geometries) with a fresh superposition-of-atomic-densities guess; a
rescued sample carries ``extras["xtb_retry"] = 1`` and
``extras["electronic_temperature_K"]`` so it can be found (and dropped) later, and every
label of that sample (including the whole finite-difference Hessian) is computed at the
retry temperature. If the retry fails too, LabelError names both attempts.

Reference: C. Bannwarth, S. Ehlert, S. Grimme, J. Chem. Theory Comput. 15, 1652 (2019).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import numpy as np

from horm.data.sample import Sample
from horm.errors import LabelError, UsageError
from horm.label.engine import LABELS, check_spin, check_want, labelled
from horm.units import (
    ANGSTROM_TO_BOHR,
    HARTREE_PER_BOHR2_TO_EV_PER_ANGSTROM2,
    HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM,
    HARTREE_TO_EV,
    KELVIN_TO_HARTREE,
)

XtbMethod = Literal["GFN2-xTB", "GFN1-xTB"]
XTB_METHODS: tuple[str, ...] = get_args(XtbMethod)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@dataclass(frozen=True)
class XtbEngine:
    """GFN2-xTB energies, analytic forces and finite-difference Hessians (tblite)."""

    method: XtbMethod = "GFN2-xTB"  # tblite parametrisation
    electronic_temperature: float = 300.0  # K, Fermi smearing of the SCF
    max_iter: int = 250  # SCF iterations before giving up (tblite "max-iter")
    accuracy: float = 1.0  # tblite accuracy factor for energy/forces (smaller = tighter)
    hessian_accuracy: float = 0.01  # accuracy factor for the gradients of the FD Hessian
    hessian_step: float = 0.0025  # Å, central-difference displacement
    retry: bool = True  # on SCF failure, retry once at retry_temperature with a fresh guess
    retry_temperature: float = 1000.0  # K

    name = "xtb"

    def __post_init__(self):
        if self.method not in XTB_METHODS:
            raise UsageError(f"xtb method {self.method!r}: expected one of {', '.join(XTB_METHODS)}")
        for field in ("electronic_temperature", "retry_temperature", "accuracy",
                      "hessian_accuracy", "hessian_step"):
            if not float(getattr(self, field)) > 0:
                raise UsageError(f"xtb {field}={getattr(self, field)!r}: must be > 0")
        if int(self.max_iter) < 1:
            raise UsageError(f"xtb max_iter={self.max_iter!r}: must be >= 1")

    # --- Engine protocol -------------------------------------------------------------
    @property
    def level_of_theory(self) -> str:
        return (f"{self.method} (tblite), T_el={self.electronic_temperature:g} K, "
                f"FD Hessian of analytic gradients, central, h={self.hessian_step:g} Å, symmetrised")

    @property
    def settings(self) -> dict[str, Any]:
        return asdict(self)

    def compute(self, sample: Sample, want: tuple[str, ...] = LABELS) -> Sample:
        """Labelled copy of ``sample`` (energy eV, forces (N,3) eV/Å, Hessian (3N,3N) eV/Å²)."""
        from tblite.exceptions import TBLiteRuntimeError, TBLiteValueError

        want = check_want(want)
        where = f"xtb{f' {sample.key}' if sample.key else ''}"
        unpaired = check_spin(sample, where)
        extras: dict[str, Any] = {}
        try:
            try:
                e, f, h = self._run(sample, want, unpaired, self.electronic_temperature)
            except TBLiteRuntimeError as exc:
                first = f"{_one_line(exc)} at T_el={self.electronic_temperature:g} K"
                if not self.retry:
                    raise LabelError(f"{where}: {first}") from None
                try:
                    e, f, h = self._run(sample, want, unpaired, self.retry_temperature)
                except TBLiteRuntimeError as exc2:
                    raise LabelError(f"{where}: {first}; retry at T_el={self.retry_temperature:g} K "
                                     f"with a fresh guess: {_one_line(exc2)}") from None
                extras = {"xtb_retry": 1, "electronic_temperature_K": float(self.retry_temperature)}
        except TBLiteValueError as exc:
            raise LabelError(f"{where}: tblite refused the input: {_one_line(exc)}") from None
        if not np.isfinite(e) or not np.all(np.isfinite(f)) or (h is not None and not np.all(np.isfinite(h))):
            raise LabelError(f"{where}: tblite returned NaN or inf")
        return labelled(sample, want, e, f, h, extras)

    # --- internals -------------------------------------------------------------------
    def _calculator(self, sample: Sample, unpaired: int, temperature: float, accuracy: float):
        from tblite.interface import Calculator

        calc = Calculator(self.method, np.asarray(sample.numbers, dtype=np.int32),
                          np.asarray(sample.pos, dtype=np.float64) * ANGSTROM_TO_BOHR,
                          charge=float(sample.charge), uhf=int(unpaired))
        calc.set("verbosity", 0)
        calc.set("max-iter", int(self.max_iter))
        calc.set("temperature", float(temperature) * KELVIN_TO_HARTREE)
        calc.set("accuracy", float(accuracy))
        return calc

    def _run(self, sample: Sample, want: tuple[str, ...], unpaired: int, temperature: float):
        """(energy eV, forces (N,3) eV/Å, Hessian (3N,3N) eV/Å² or None)."""
        need_h = "hessian" in want
        calc = self._calculator(sample, unpaired, temperature,
                                min(self.accuracy, self.hessian_accuracy) if need_h else self.accuracy)
        res = calc.singlepoint()
        energy = float(res.get("energy")) * HARTREE_TO_EV
        forces = -np.asarray(res.get("gradient"), dtype=np.float64) * HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM
        hessian = self._fd_hessian(calc, res, sample.pos) if need_h else None
        return energy, forces, hessian

    def _fd_hessian(self, calc, ref, pos) -> np.ndarray:
        """Central differences of analytic gradients; (3N, 3N) eV/Å², symmetrised."""
        pos_b = np.asarray(pos, dtype=np.float64) * ANGSTROM_TO_BOHR
        n3 = pos_b.size
        step_b = self.hessian_step * ANGSTROM_TO_BOHR
        hess = np.empty((n3, n3))
        for k in range(n3):
            grads = []
            for sign in (1.0, -1.0):
                disp = pos_b.copy().reshape(-1)
                disp[k] += sign * step_b
                calc.update(positions=disp.reshape(-1, 3))
                res = calc.singlepoint(ref, copy=True)  # restart from the reference wavefunction
                grads.append(np.asarray(res.get("gradient"), dtype=np.float64).reshape(-1))
            hess[:, k] = (grads[0] - grads[1]) / (2.0 * step_b)  # Eh/Bohr²
        calc.update(positions=pos_b)
        hess = 0.5 * (hess + hess.T)
        return hess * HARTREE_PER_BOHR2_TO_EV_PER_ANGSTROM2
