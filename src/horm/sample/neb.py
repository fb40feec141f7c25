"""T1x-style geometries: IDPP interpolation, NEB then climbing-image NEB, snapshots along the way.

Transition1x (Schreiner et al., Sci. Data 9, 779 (2022)) labels the images of every NEB
iteration, not only the converged path, so that the data cover the region around the
minimum-energy path. We do the same with ASE: the band starts from an image-dependent
pair potential (IDPP) interpolation (Smidstrup et al., J. Chem. Phys. 140, 214106
(2014)), relaxes as a plain NEB for ``neb_steps``, then as a climbing-image NEB
(Henkelman, Uberuaga, Jónsson, J. Chem. Phys. 113, 9901 (2000)) for ``ci_steps`` or until
the largest image force is below ``fmax``. Every ``keep_every`` optimiser steps the
interior images are snapshotted (origin ``neb:iter<step>:img<k>``); the last band is
``neb:final:img<k>``. A seeded fraction of the intermediate snapshots is kept; the
final band and (optionally) the two endpoints are always kept.

An engine failure (e.g. xTB SCF not converged on an interpolated geometry) ends the
band relaxation for that reaction; it is recorded as a failure and the snapshots taken
before it are kept. Geometries with atoms closer than ``MIN_DISTANCE`` are dropped and
recorded, never returned.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

from horm.data.sample import MIN_DISTANCE, Sample
from horm.errors import UsageError

NebOptimizer = Literal["fire", "bfgs"]


@dataclass
class NebSampleSettings:
    n_images: int = 10  # band images including both endpoints
    spring: float = 0.1  # NEB spring constant, eV/Å²
    neb_steps: int = 60  # plain-NEB optimiser steps before climbing
    ci_steps: int = 60  # climbing-image steps (stops early at fmax)
    fmax: float = 0.1  # CI-NEB convergence: largest image force, eV/Å
    optimizer: NebOptimizer = "fire"  # ASE optimiser moving the band
    keep_every: int = 5  # snapshot interior images every this many optimiser steps
    fraction: float = 0.3  # fraction of intermediate snapshots kept (seeded per reaction)
    endpoints: bool = True  # also return reactant and product
    seed: int = 0  # with the reaction id, fixes which snapshots are kept

    def __post_init__(self):
        valid = get_args(NebOptimizer)
        if self.optimizer not in valid:
            raise UsageError(f"NEB optimizer {self.optimizer!r} is not valid; choose one of {', '.join(valid)}")
        if self.n_images < 3:
            raise UsageError(f"n_images must be >= 3, got {self.n_images}")
        if not 0.0 <= self.fraction <= 1.0:
            raise UsageError(f"fraction must be in [0, 1], got {self.fraction}")
        if self.keep_every < 1:
            raise UsageError(f"keep_every must be >= 1, got {self.keep_every}")


@dataclass
class ReactionSamples:
    """The geometries sampled for one reaction (unlabelled Samples) and what went wrong."""

    rxn: str
    method: str
    samples: list[Sample]
    failures: list[dict] = field(default_factory=list)  # {"key", "reason", **details}
    seconds: float = 0.0
    info: dict = field(default_factory=dict)  # steps, converged, counts


def rxn_rng(rxn: str, seed: int) -> np.random.Generator:
    """A generator fixed by (seed, reaction id), independent of processing order."""
    h = hashlib.blake2b(f"{seed}:{rxn}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(h, "little"))


def geometry(template: Sample, pos, rxn: str, origin: str) -> Sample:
    """An unlabelled Sample at ``pos`` (N, 3) Å with key ``<rxn>:<origin>``."""
    return Sample(numbers=np.asarray(template.numbers), pos=np.array(pos, dtype=np.float64),
                  charge=template.charge, multiplicity=template.multiplicity,
                  rxn=rxn, origin=origin, key=f"{rxn}:{origin}")


def too_close(pos: np.ndarray, min_distance: float = MIN_DISTANCE) -> bool:
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    d[np.diag_indices(len(pos))] = np.inf
    return bool(d.min() < min_distance)


def keep_valid(samples: list[Sample], failures: list[dict]) -> list[Sample]:
    """Drop geometries with atoms closer than MIN_DISTANCE, recording each as a failure."""
    out = []
    for s in samples:
        if too_close(np.asarray(s.pos)):
            failures.append({"key": s.key, "reason": f"bad geometry: atoms closer than {MIN_DISTANCE} Å",
                             "stage": "sample"})
        else:
            out.append(s)
    return out


def error_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}"


def sample_neb(reactant: Sample, product: Sample, calc, settings: NebSampleSettings | None = None) -> ReactionSamples:
    """Sample geometries along a (CI-)NEB from ``reactant`` to ``product`` (same atom order).

    calc: an ASE calculator (e.g. :class:`horm.calculators.potential.HormCalculator` over an
    Engine), shared by all images. Returns unlabelled Samples with ``rxn``, ``origin``
    and ``key``; never raises on an engine failure.
    """
    from ase.build import minimize_rotation_and_translation
    from ase.mep import NEB
    from ase.optimize import BFGS, FIRE

    from horm.ts.path import interpolate

    s = settings or NebSampleSettings()
    t0 = time.perf_counter()
    rxn = reactant.rxn or product.rxn or "rxn"
    ra, pa = reactant.to_atoms(), product.to_atoms()
    ra.calc = pa.calc = None
    if len(ra) > 2:
        minimize_rotation_and_translation(ra, pa)
    images, used, notes = interpolate(ra, pa, s.n_images, "idpp")
    snapshots: list[tuple[int, np.ndarray]] = []  # (step, interior positions (n_images-2, N, 3))
    state = {"offset": 0}

    def snap(opt):
        step = state["offset"] + opt.nsteps
        pos = np.stack([im.positions.copy() for im in images[1:-1]])
        if not snapshots or snapshots[-1][0] != step:
            snapshots.append((step, pos))

    failures: list[dict] = []
    converged, steps, error = False, 0, None
    opt_cls = {"fire": FIRE, "bfgs": BFGS}[s.optimizer]
    for im in images:
        im.calc = calc
    try:
        neb = NEB(images, k=s.spring, climb=False, method="improvedtangent", allow_shared_calculator=True)
        for phase, nsteps in (("neb", s.neb_steps), ("ci", s.ci_steps)):
            if nsteps <= 0:
                continue
            neb.climb = phase == "ci"
            opt = opt_cls(neb, logfile=None)
            opt.attach(lambda o=opt: snap(o), interval=s.keep_every)
            ok = bool(opt.run(fmax=s.fmax, steps=nsteps))
            state["offset"] += opt.nsteps
            steps = state["offset"]
            if phase == "ci":
                converged = ok
    except Exception as exc:  # engine failures end the band, not the run
        error = error_line(exc)
        failures.append({"key": f"{rxn}:neb", "reason": error, "stage": "neb", "step": state["offset"]})
    final = np.stack([im.positions.copy() for im in images[1:-1]])
    if snapshots and np.array_equal(snapshots[-1][1], final):
        snapshots.pop()  # the final band is stored once, as "final"
    rng = rxn_rng(rxn, s.seed)
    candidates = [(step, k) for step, _ in snapshots for k in range(s.n_images - 2)]
    n_keep = int(round(s.fraction * len(candidates)))
    chosen = sorted(rng.choice(len(candidates), size=n_keep, replace=False).tolist()) if n_keep else []
    by_step = dict(snapshots)
    out: list[Sample] = []
    if s.endpoints:
        out.append(geometry(reactant, ra.positions, rxn, "reactant"))
        out.append(geometry(reactant, pa.positions, rxn, "product"))
    for c in chosen:
        step, k = candidates[c]
        out.append(geometry(reactant, by_step[step][k], rxn, f"neb:iter{step}:img{k + 1}"))
    if error is None:
        out += [geometry(reactant, final[k], rxn, f"neb:final:img{k + 1}") for k in range(s.n_images - 2)]
    out = keep_valid(out, failures)
    info = {"steps": steps, "converged": converged, "interpolation": used, "snapshots": len(snapshots),
            "kept_intermediate": n_keep, "notes": notes}
    return ReactionSamples(rxn, "neb", out, failures, time.perf_counter() - t0, info)
