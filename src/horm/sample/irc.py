"""RGD1-style geometries: points along the IRC from a transition state, both ways.

RGD1 (Zhao et al., Sci. Data 10, 145 (2023)) samples the intrinsic reaction coordinate
of each located TS. Here the TS comes from the reactant/product pair in three stages,
all reused from :mod:`horm.ts`: a short climbing-image NEB (:func:`horm.ts.path.find_path`,
IDPP start) gives the highest image as the guess; Sella refines it to an order-1 saddle
(:func:`horm.ts.tsopt.optimize_ts`, engine Hessian at the start, then Sella's updates);
Sella's IRC (:func:`horm.ts.irc.run_irc`) follows the path both ways. Up to ``k`` points per
side, evenly spread over each branch, are kept, plus the TS itself.

Origins: ``ts`` (or ``tsopt:last`` when Sella's end point is not a verified order-1
saddle and ``accept_unconverged_ts``), ``irc:forward:<step>``, ``irc:reverse:<step>`` (step = IRC step index).
A failed stage is recorded (with its reason) and ends the reaction; what was sampled
before it is kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from horm.data.sample import Sample
from horm.errors import UsageError
from horm.sample.neb import ReactionSamples, error_line, geometry, keep_valid


@dataclass
class IrcSampleSettings:
    n_images: int = 8  # images of the guess NEB, endpoints included
    neb_steps: int = 60  # climbing-image NEB steps for the TS guess
    neb_fmax: float = 0.15  # eV/Å
    ts_steps: int = 40  # Sella steps
    ts_fmax: float = 0.02  # eV/Å
    hessian_every: int = 0  # engine Hessian every n Sella steps (0: only at the start)
    irc_dx: float = 0.1  # IRC step, Å·amu^½
    irc_steps: int = 25  # IRC steps per direction
    k: int = 8  # points kept per side
    accept_unconverged_ts: bool = True  # sample from Sella's last geometry even if not converged

    def __post_init__(self):
        if self.k < 1 or self.irc_steps < 1:
            raise UsageError(f"k and irc_steps must be >= 1, got k={self.k}, irc_steps={self.irc_steps}")


def _spread(n: int, k: int) -> list[int]:
    """Up to k indices spread evenly over range(n), the last one included."""
    if n <= k:
        return list(range(n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, k)})


def sample_irc(reactant: Sample, product: Sample, calc, settings: IrcSampleSettings | None = None) -> ReactionSamples:
    """TS (NEB guess → Sella) then IRC points both ways, as unlabelled Samples.

    calc: a :class:`horm.calculators.potential.HessianCalculator` (needs ``get_hessian``), e.g.
    ``HormCalculator(get_engine("xtb"))``. Never raises on an engine failure.
    """
    from horm.ts.irc import IRCSettings, run_irc
    from horm.ts.path import PathSettings, find_path
    from horm.ts.tsopt import TSOptSettings, optimize_ts

    s = settings or IrcSampleSettings()
    t0 = time.perf_counter()
    rxn = reactant.rxn or product.rxn or "rxn"
    failures: list[dict] = []
    info: dict = {}
    out: list[Sample] = []

    def done() -> ReactionSamples:
        return ReactionSamples(rxn, "irc", keep_valid(out, failures), failures, time.perf_counter() - t0, info)

    ra, pa = reactant.to_atoms(), product.to_atoms()
    ra.calc = pa.calc = None
    path = find_path(ra, pa, calc, PathSettings(interpolation="idpp", n_images=s.n_images, climb=True,
                                                fmax=s.neb_fmax, max_steps=s.neb_steps))
    info["neb"] = {"steps": path.steps, "converged": path.converged}
    if path.error:
        failures.append({"key": f"{rxn}:neb", "reason": path.error, "stage": "neb"})
        return done()
    ts = optimize_ts(path.ts_guess, calc, TSOptSettings(fmax=s.ts_fmax, max_steps=s.ts_steps,
                                                        hessian_every=s.hessian_every))
    info["ts"] = {"steps": ts.steps, "converged": ts.converged, "success": ts.success,
                  "n_imaginary": ts.n_imaginary}
    if ts.error or (not ts.success and not s.accept_unconverged_ts):
        failures.append({"key": f"{rxn}:ts", "reason": ts.error or f"TS not found (n_imaginary={ts.n_imaginary})",
                         "stage": "ts"})
        return done()
    # "ts" only for a verified order-1 saddle; Sella's last geometry otherwise
    out.append(geometry(reactant, ts.atoms.positions, rxn, "ts" if ts.success else "tsopt:last"))
    try:
        irc = run_irc(ts.atoms, calc, IRCSettings(dx=s.irc_dx, max_steps=s.irc_steps, opt_max_steps=1))
    except Exception as exc:  # run_irc records its own errors; this is a last guard
        failures.append({"key": f"{rxn}:irc", "reason": error_line(exc), "stage": "irc"})
        return done()
    info["irc"] = {"steps": irc.steps, "converged": irc.converged, "error": irc.error}
    if irc.error:
        failures.append({"key": f"{rxn}:irc", "reason": irc.error, "stage": "irc"})
    for direction, branch in (("forward", irc.forward), ("reverse", irc.reverse)):
        for i in _spread(len(branch), s.k):
            out.append(geometry(reactant, branch[i].positions, rxn, f"irc:{direction}:{i + 1}"))
    return done()
