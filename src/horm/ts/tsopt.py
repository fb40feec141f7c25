"""TS optimisation: an order-1 saddle search with Sella and the model Hessian.

Sella (Hermes, Sargsyan, Najm, Zádor, J. Chem. Theory Comput. 18, 6974 (2022)) takes
partitioned rational-function steps in internal coordinates; with ``hessian_function`` it
uses the calculator's Hessian instead of iterative estimates. ``hessian_every`` sets how
often that Hessian is recomputed: 1 = every step (the HORM paper, which ran
pysisyphus RS-P-RFO with the MLIP Hessian each cycle), k = every k-th step, 0 = only at
the start (Sella's quasi-Newton updates afterwards).

A TS counts only when, at the final geometry, the largest atomic force is ≤ ``fmax`` (Sella's
test on forces without rigid-body components, or the raw forces) and
the Eckart-projected Hessian has exactly one imaginary frequency below
``imag_threshold`` (cm⁻¹, default −10; :mod:`horm.hessian.analysis`). For a model
surface that is not a molecule (``molecule=False``, e.g. Müller–Brown) there are no
rigid-body modes: Sella then steps in Cartesians without projecting translations or
rotations, and frequencies come from the unprojected mass-weighted Hessian.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

from horm.errors import UsageError
from horm.hessian.analysis import IMAGINARY_THRESHOLD, frequencies, mass_weight, masses_of, n_imaginary
from horm.ts.irc import snapshot
from horm.units import SQRT_EV_PER_ANG2_AMU_TO_CM1

Coordinates = Literal["internal", "cartesian"]


@dataclass
class TSOptSettings:
    fmax: float = 0.01  # convergence: largest atomic force, eV/Å
    max_steps: int = 50  # the paper's ≤ 50 cycles
    hessian_every: int = 1  # recompute the model Hessian every n steps; 0 = only at the start
    coordinates: Coordinates = "internal"  # Sella's step coordinates (falls back to Cartesian)
    trust_radius: float | None = None  # Sella's initial trust radius (delta0); None: Sella's default
    imag_threshold: float = IMAGINARY_THRESHOLD  # cm⁻¹; modes below it count as imaginary
    molecule: bool = True  # False for a model surface (no rigid-body modes, no Eckart projection)

    def __post_init__(self):
        valid = get_args(Coordinates)
        if self.coordinates not in valid:
            raise UsageError(f"coordinates {self.coordinates!r} is not valid; choose one of {', '.join(valid)}")
        if self.hessian_every < 0:
            raise UsageError(f"hessian_every must be >= 0, got {self.hessian_every}")
        if self.max_steps < 1 or not self.fmax > 0:
            raise UsageError(f"TS optimisation needs max_steps >= 1 and fmax > 0, got {self.max_steps}, {self.fmax}")


@dataclass
class TSResult:
    atoms: object  # ASE Atoms at the final geometry (energy in info["energy"])
    energy: float | None  # eV
    fmax: float | None  # largest atomic force at the end, eV/Å
    freqs: np.ndarray | None  # cm⁻¹ ascending, imaginary negative
    hessian: np.ndarray | None  # (3N, 3N) eV/Å² at the end
    n_imaginary: int | None
    converged: bool  # Sella reached fmax within max_steps
    success: bool  # force threshold met and exactly one imaginary frequency
    steps: int
    seconds: float
    coordinates: str
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    iterates: list = field(default_factory=list)  # Atoms at every Sella step, start included (energy in info)

    def record(self) -> dict:
        """JSON-able summary of the stage."""
        imag = None if self.freqs is None else [float(f) for f in self.freqs[self.freqs < 0][:3]]
        return {"success": self.success, "converged": self.converged, "steps": self.steps,
                "seconds": round(self.seconds, 3), "energy": self.energy, "fmax": self.fmax,
                "n_imaginary": self.n_imaginary, "imaginary_freqs_cm1": imag,
                "coordinates": self.coordinates, "error": self.error, "notes": self.notes}


def vibrational_frequencies(hessian: np.ndarray, atoms, molecule: bool = True) -> np.ndarray:
    """Frequencies (cm⁻¹, ascending, imaginary negative): Eckart-projected for molecules,
    from the plain mass-weighted Hessian otherwise."""
    if molecule:
        return frequencies(hessian, atoms.positions, atoms.numbers)
    lam = np.linalg.eigvalsh(mass_weight(0.5 * (hessian + hessian.T), masses_of(atoms.numbers)))
    return np.sign(lam) * np.sqrt(np.abs(lam)) * SQRT_EV_PER_ANG2_AMU_TO_CM1


def characterise(atoms, calc, settings: TSOptSettings) -> dict:
    """Energy, largest force, Hessian, frequencies and imaginary count at ``atoms`` (one Hessian call)."""
    hess = calc.get_hessian(atoms)
    forces = np.asarray(calc.results["forces"]).reshape(-1, 3)
    freqs = vibrational_frequencies(hess, atoms, settings.molecule)
    return {"energy": float(calc.results["energy"]), "fmax": float(np.linalg.norm(forces, axis=1).max()),
            "hessian": hess, "freqs": freqs, "n_imaginary": n_imaginary(freqs, settings.imag_threshold)}


def _sella(atoms, calc, s: TSOptSettings, internal: bool, hessian_function=None):
    from sella import Sella

    kw = {}
    if s.trust_radius is not None:
        kw["delta0"] = s.trust_radius
    if not s.molecule:
        kw.update(proj_trans=False, proj_rot=False)
    diag_every_n = None if s.hessian_every == 0 else s.hessian_every - 1
    return Sella(atoms, order=1, internal=internal, hessian_function=hessian_function or calc.get_hessian,
                 diag_every_n=diag_every_n, logfile=None, **kw)


def optimize_ts(guess, calc, settings: TSOptSettings | None = None, hessian_function=None) -> TSResult:
    """Saddle search from ``guess`` (ASE Atoms, not modified) with ``calc`` (a HessianCalculator).

    hessian_function: where Sella's Hessians come from (default ``calc.get_hessian``; another
    calculator's, e.g. a model's while ``calc`` is the reference). The final characterisation
    always uses ``calc``'s own Hessian.

    Calculator or Sella failures end the stage with ``error`` set; they are not raised.
    """
    s = settings or TSOptSettings()
    t0 = time.perf_counter()
    atoms = guess.copy()
    atoms.calc = calc
    notes: list[str] = []
    internal = s.molecule and s.coordinates == "internal" and len(atoms) > 2
    coords = "internal" if internal else "cartesian"
    converged, steps, error = False, 0, None
    iterates: list = []
    try:
        try:
            opt = _sella(atoms, calc, s, internal, hessian_function)
        except Exception as exc:  # Sella cannot build internals for some geometries
            if not internal:
                raise
            notes.append(f"internal coordinates failed ({type(exc).__name__}); used Cartesian")
            internal, coords = False, "cartesian"
            atoms.positions = guess.positions
            opt = _sella(atoms, calc, s, internal, hessian_function)
        opt.attach(lambda: iterates.append(snapshot(atoms, calc)))
        converged = bool(opt.run(fmax=s.fmax, steps=s.max_steps))
        steps = int(opt.nsteps)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    info = None
    if error is None:
        try:
            info = characterise(atoms, calc, s)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    final = atoms.copy()
    final.calc = None
    if info is None:
        return TSResult(final, None, None, None, None, None, converged, False, steps,
                        time.perf_counter() - t0, coords, error, notes, iterates)
    final.info["energy"] = info["energy"]
    # force threshold: Sella's own test (forces projected off rigid-body motion) or the raw forces
    ok = (converged or info["fmax"] <= s.fmax) and info["n_imaginary"] == 1
    return TSResult(final, info["energy"], info["fmax"], info["freqs"], info["hessian"], info["n_imaginary"],
                    converged, bool(ok), steps, time.perf_counter() - t0, coords, error, notes, iterates)
