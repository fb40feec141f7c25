"""Initial guess for a TS: interpolate reactant → product, then relax a climbing-image NEB.

Interpolation (``PathSettings.interpolation``):

- ``geodesic``: geodesic interpolation in redundant internal coordinates (Zhu, Thompson,
  Martínez, J. Chem. Phys. 150, 164103 (2019)) through the ``geodesic-interpolate``
  package; when the package is missing or fails, IDPP is used and the record says so.
- ``idpp``: image-dependent pair potential (Smidstrup et al., J. Chem. Phys. 140, 214106
  (2014)) through ASE.
- ``linear``: straight line in Cartesians (the only one that makes sense for one atom on a
  model surface).

The double-ended path is ASE's NEB with a climbing image (Henkelman, Uberuaga, Jónsson,
J. Chem. Phys. 113, 9901 (2000)), the images sharing one calculator. The highest interior
image is the TS guess. A NEB that does not reach ``fmax`` in ``max_steps`` is recorded as
not converged; its highest image is still handed on (the growing string of the paper does
the same with its highest node).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from horm.errors import UsageError
from horm.settings import check_choice

Interpolation = Literal["geodesic", "idpp", "linear"]
PathMethod = Literal["neb", "none"]
NebOptimizer = Literal["fire", "ode", "bfgs", "mdmin"]


@dataclass
class PathSettings:
    interpolation: Interpolation = "geodesic"  # initial path between R and P
    n_images: int = 10  # images including both endpoints
    method: PathMethod = "neb"  # "none": take the highest interpolated image as the guess
    climb: bool = True  # climbing image NEB
    spring: float = 0.1  # NEB spring constant, eV/Å²
    fmax: float = 0.1  # NEB convergence on the largest image force, eV/Å
    max_steps: int = 300  # NEB optimiser steps
    optimizer: NebOptimizer = "ode"  # ASE optimiser of the band ("ode": NEBOptimizer, 2-4x fewer calls than FIRE)
    align: bool = True  # rotate/translate P onto R (Kabsch) before interpolating

    def __post_init__(self):
        check_choice(self.interpolation, Interpolation, "interpolation")
        check_choice(self.method, PathMethod, "path method")
        check_choice(self.optimizer, NebOptimizer, "NEB optimizer")
        if self.n_images < 3:
            raise UsageError(f"n_images must be >= 3 (R, one image, P), got {self.n_images}")


@dataclass
class PathResult:
    images: list  # ASE Atoms, R first, P last
    energies: list[float | None]  # eV per image (None where not computed)
    ts_index: int  # index of the TS guess in images
    converged: bool
    steps: int
    interpolation: str  # the one actually used
    seconds: float
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ts_guess(self):
        return self.images[self.ts_index]

    def record(self) -> dict:
        """JSON-able summary of the stage (success = converged without error)."""
        return {"success": self.converged and self.error is None, "converged": self.converged,
                "steps": self.steps, "interpolation": self.interpolation,
                "seconds": round(self.seconds, 3), "ts_index": self.ts_index, "error": self.error,
                "notes": self.notes, "energies": [None if e is None else float(e) for e in self.energies]}


def interpolate(reactant, product, n_images: int, method: Interpolation = "geodesic") -> tuple[list, str, list[str]]:
    """n_images ASE Atoms from reactant to product (endpoints included), the method used, notes."""
    check_choice(method, Interpolation, "interpolation")
    notes: list[str] = []
    if method == "geodesic":
        try:
            return _geodesic(reactant, product, n_images), "geodesic", notes
        except ImportError:
            notes.append("geodesic-interpolate is not installed; used IDPP")
        except Exception as exc:  # the package's own numerical failures
            notes.append(f"geodesic interpolation failed ({type(exc).__name__}: {exc}); used IDPP")
        method = "idpp"
    from ase.mep import NEB

    images = [reactant.copy() for _ in range(n_images - 1)] + [product.copy()]
    neb = NEB(images, method="improvedtangent")
    if method == "idpp" and len(reactant) > 1:
        neb.interpolate(method="idpp")
    else:
        neb.interpolate()
        method = "linear"
    return images, method, notes


GEODESIC_SEED = 0


def _geodesic(reactant, product, n_images: int) -> list:
    """geodesic-interpolate's path. The package draws from numpy's global random state (image
    order in ``redistribute``, nudges in the smoother), so without a fixed seed the same
    reaction got a different band, and sometimes a different outcome, on every run: it runs
    under ``GEODESIC_SEED`` and the caller's global state is restored afterwards."""
    import logging

    from geodesic_interpolate import Geodesic, redistribute

    symbols = reactant.get_chemical_symbols()
    x = np.stack([reactant.positions, product.positions])
    state = np.random.get_state()
    np.random.seed(GEODESIC_SEED)
    try:
        raw = redistribute(symbols, x, n_images, tol=2e-3 * 5)
        # its progress goes to logging at the level given here: keep it at DEBUG
        smoother = Geodesic(symbols, raw, 1.7, threshold=3.0, friction=1e-2, log_level=logging.DEBUG)
        smoother.smooth(tol=2e-3, max_iter=15, log_level=logging.DEBUG)
    finally:
        np.random.set_state(state)
    path = np.asarray(smoother.path)
    if path.shape != (n_images, len(reactant), 3) or not np.all(np.isfinite(path)):
        raise RuntimeError(f"unexpected geodesic path of shape {path.shape}")
    images = []
    for k in range(n_images):
        a = reactant.copy()
        a.positions = path[k]
        images.append(a)
    return images


def _optimizer_class(name: NebOptimizer):
    from ase.mep.neb import NEBOptimizer
    from ase.optimize import BFGS, FIRE, MDMin

    return {"fire": FIRE, "ode": NEBOptimizer, "bfgs": BFGS, "mdmin": MDMin}[name]


def _batched_neb(images, calc, **kw):
    """ASE's NEB whose images (the fixed ends too: ASE asks for their energies on every band
    update, and a shared calculator has forgotten them) are evaluated in one batched model
    call per update (``calc.prefetch``) before ASE asks each image in turn: the same numbers as
    the per-image calls in a fraction of the time for a torch model (``benchmarks/neb_batch.py``)."""
    from ase.mep import NEB

    class BatchedNEB(NEB):
        def get_forces(self):
            if hasattr(calc, "prefetch"):
                calc.prefetch(self.images)
            return super().get_forces()

    return BatchedNEB(images, **kw)


def highest_interior(energies: list[float | None]) -> int:
    """Index of the highest interior image with a known energy (the middle one when none is known)."""
    known = [(e, k) for k, e in enumerate(energies) if e is not None and 0 < k < len(energies) - 1]
    return max(known)[1] if known else len(energies) // 2


def detached(images, energies: list[float | None]) -> list:
    """Calculator-free copies of a band's images, each with its energy (eV) in ``info`` where known."""
    out = []
    for im, e in zip(images, energies):
        a = im.copy()
        a.calc = None
        if e is not None:
            a.info["energy"] = e
        out.append(a)
    return out


def find_path(reactant, product, calc, settings: PathSettings | None = None) -> PathResult:
    """Interpolate, relax a (CI-)NEB with ``calc`` and pick the TS guess; never raises on
    a calculator failure (the result carries ``error``)."""
    from ase.build import minimize_rotation_and_translation

    s = settings or PathSettings()
    t0 = time.perf_counter()
    reactant = reactant.copy()
    product = product.copy()
    if s.align and len(reactant) > 2:
        minimize_rotation_and_translation(reactant, product)
    images, used, notes = interpolate(reactant, product, s.n_images, s.interpolation)
    for im in images:
        im.calc = calc
    energies: list[float | None] = [None] * len(images)
    converged, error, opt = False, None, None
    try:
        if s.method == "none":
            energies = [float(im.get_potential_energy()) for im in images]
            converged = True
        else:
            neb = _batched_neb(images, calc, k=s.spring, climb=s.climb, method="improvedtangent",
                               allow_shared_calculator=True)
            opt = _optimizer_class(s.optimizer)(neb, logfile=None)
            finished = bool(opt.run(fmax=s.fmax, steps=s.max_steps))
            # ASE's ODE NEBOptimizer reports success also when it runs out of steps, so the
            # band's own residual (largest image force of the last evaluation) decides
            converged = finished and float(neb.get_residual()) <= s.fmax
            if hasattr(calc, "prefetch"):
                calc.prefetch(images)
            energies = [float(im.get_potential_energy()) for im in images]
    except Exception as exc:  # calculator failures (e.g. SCF) end the stage, not the run
        error = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    steps = int(opt.nsteps) if opt is not None else 0
    # detach the shared calculator so later stages own their atoms
    return PathResult(images=detached(images, energies), energies=energies, ts_index=highest_interior(energies),
                      converged=converged and error is None, steps=steps, interpolation=used,
                      seconds=time.perf_counter() - t0, error=error, notes=notes)
