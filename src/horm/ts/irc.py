"""IRC from a TS in both directions (Sella's IRC), then relax both ends to minima.

Sella's IRC (Hermes et al., J. Chem. Theory Comput. 18, 6974 (2022)) follows the
mass-weighted steepest-descent path from the saddle with steps of ``dx`` (Å·amu^½); it
starts along the imaginary mode of the calculator's Hessian (``hessian_function``). A
direction is "converged" when, within ``max_steps``, Sella's IRC reaches ``fmax`` at positive
curvature, or its last point has forces below ``fmax`` at least ``DESCENT_EV`` below the TS
(:func:`reached_minimum`). Sella's own test wants the lowest eigenvalue of its Hessian to be
positive, which the translation and rotation zero modes of a Cartesian molecular Hessian
prevent, so without the force test no molecular IRC "converges" (and each branch walks on around
its minimum to ``max_steps``). Each end is then relaxed with ASE's LBFGS to ``opt_fmax``; the
relaxed ends are what :mod:`horm.ts.verify` compares with the reactant and product.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from horm.errors import UsageError

DESCENT_EV = 0.01  # an IRC end must lie this far below the TS to count as a minimum reached


@dataclass
class IRCSettings:
    dx: float = 0.1  # IRC step, Å·amu^½
    fmax: float = 0.05  # IRC stops at a point with forces below this, eV/Å
    max_steps: int = 100  # IRC steps per direction
    opt_fmax: float = 0.01  # endpoint relaxation, eV/Å
    opt_max_steps: int = 500  # endpoint relaxation steps

    def __post_init__(self):
        if self.dx <= 0 or self.max_steps < 1:
            raise UsageError(f"IRC needs dx > 0 and max_steps >= 1, got dx={self.dx}, max_steps={self.max_steps}")


@dataclass
class IRCResult:
    forward: list  # ASE Atoms along the forward branch, TS excluded (info["energy"] eV)
    reverse: list  # the same for the reverse branch
    end_forward: object | None  # relaxed forward end (Atoms) or None
    end_reverse: object | None
    converged: dict[str, bool]  # per direction
    steps: dict[str, int]
    opt_converged: dict[str, bool]
    opt_steps: dict[str, int]
    seconds: float
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    settled: dict[str, bool] = field(default_factory=dict)  # per direction: stopped early by ``stop_when``

    @property
    def converged_both(self) -> bool:
        """Both IRC branches converged (reached ``fmax`` within ``max_steps``) or were stopped
        settled by ``stop_when`` (:func:`run_irc`), no error."""
        return self.error is None and all(self.converged.get(d, False) or self.settled.get(d, False)
                                          for d in ("forward", "reverse"))

    @property
    def ends_relaxed(self) -> bool:
        """Both branch ends relaxed to ``opt_fmax`` (whether or not the IRC itself converged)."""
        return (self.error is None and self.end_forward is not None and self.end_reverse is not None
                and all(self.opt_converged.get(d, False) for d in ("forward", "reverse")))

    @property
    def success(self) -> bool:
        """Both IRC branches converged (see :attr:`converged_both`)."""
        return self.converged_both

    def record(self) -> dict:
        e = lambda a: None if a is None else a.info.get("energy")  # noqa: E731
        return {"success": self.success, "converged_both": self.converged_both, "ends_relaxed": self.ends_relaxed,
                "converged": self.converged, "settled": self.settled, "steps": self.steps,
                "opt_converged": self.opt_converged, "opt_steps": self.opt_steps,
                "energy_forward_end": e(self.end_forward), "energy_reverse_end": e(self.end_reverse),
                "seconds": round(self.seconds, 3), "error": self.error, "notes": self.notes}

    def path(self, ts) -> list:
        """The whole IRC as one list: reverse end … TS … forward end (relaxed ends included)."""
        out = ([self.end_reverse] if self.end_reverse is not None else []) + self.reverse[::-1]
        out += [ts] + self.forward
        return out + ([self.end_forward] if self.end_forward is not None else [])


def snapshot(atoms, calc):
    """A calculator-free copy of ``atoms`` with the energy the calculator last gave (``info['energy']``, eV)."""
    a = atoms.copy()
    a.calc = None
    if "energy" in calc.results:
        a.info["energy"] = float(calc.results["energy"])
    return a


def relax(atoms, calc, fmax: float, max_steps: int) -> tuple[object, bool, int]:
    """LBFGS minimisation of a copy of ``atoms``; returns (relaxed Atoms, converged, steps)."""
    from ase.optimize import LBFGS

    a = atoms.copy()
    a.calc = calc
    opt = LBFGS(a, logfile=None)
    ok = bool(opt.run(fmax=fmax, steps=max_steps))
    a.get_potential_energy()
    return snapshot(a, calc), ok, int(opt.nsteps)


def reached_minimum(atoms, ts_energy: float, fmax: float) -> bool:
    """The IRC's last point (``atoms`` with its calculator) has all atomic forces below ``fmax``
    and lies ``DESCENT_EV`` below the TS: it has descended to a minimum, not stalled at the TS."""
    forces = np.asarray(atoms.get_forces(), dtype=float).reshape(-1, 3)
    return (bool(np.linalg.norm(forces, axis=1).max() < fmax)
            and float(atoms.get_potential_energy()) < ts_energy - DESCENT_EV)


def _follow(ts, atoms, calc, s: IRCSettings, branches, converged, steps, ends, opt_ok, opt_steps,
            stop_when=None, relax_to=None, settled=None) -> None:
    """Both IRC branches and their relaxed ends, filling the dicts passed in (``stop_when``,
    ``relax_to``: see :func:`run_irc`)."""
    from sella import IRC

    irc = IRC(atoms, dx=s.dx, eta=1e-4, gamma=0, hessian_function=calc.get_hessian, keep_going=True,
              logfile=None)
    e_ts = float(atoms.get_potential_energy())
    current = {"dir": "forward"}
    irc.attach(lambda: branches[current["dir"]].append(snapshot(atoms, calc)))
    for direction in ("forward", "reverse"):
        current["dir"] = direction
        n0 = irc.nsteps
        done = False
        for done in irc.irun(fmax=s.fmax, steps=s.max_steps, direction=direction):
            if done or (irc.nsteps > n0 and reached_minimum(atoms, e_ts, s.fmax)):
                done = True  # stop here: keep_going would step on around the minimum to max_steps
                break
            if stop_when is not None and irc.nsteps > n0 and stop_when(atoms, e_ts, branches[direction]):
                settled[direction] = True
                break  # settled: the rest of the branch seldom changes the verdict
        converged[direction] = bool(done)
        steps[direction] = int(irc.nsteps - n0)
        # drop the observer's call at the TS itself (step 0 of each run)
        if branches[direction] and np.allclose(branches[direction][0].positions, ts.positions):
            branches[direction].pop(0)
        start = branches[direction][-1] if branches[direction] else atoms
        fmax, n_max = relax_to or (s.opt_fmax, s.opt_max_steps)
        ends[direction], opt_ok[direction], opt_steps[direction] = relax(start, calc, fmax, n_max)
    return None


def run_irc(ts, calc, settings: IRCSettings | None = None, stop_when=None, relax_to=None) -> IRCResult:
    """IRC both ways from ``ts`` (ASE Atoms, not modified) and relaxed endpoints.

    stop_when: ``f(atoms, e_ts, branch) -> bool`` asked after every IRC step (``branch``: the
    branch's points so far, this one last); True ends that branch
    there (e.g. once its bond graph is settled), before ``fmax`` is reached. relax_to:
    ``(fmax, max_steps)`` of the end relaxations instead of ``opt_fmax``/``opt_max_steps``.

    Failures (calculator, Sella) end the stage with ``error`` set; they are not raised.
    """
    s = settings or IRCSettings()
    t0 = time.perf_counter()
    atoms = ts.copy()
    atoms.calc = calc
    branches: dict[str, list] = {"forward": [], "reverse": []}
    converged = {"forward": False, "reverse": False}
    steps = {"forward": 0, "reverse": 0}
    ends: dict[str, object | None] = {"forward": None, "reverse": None}
    opt_ok = {"forward": False, "reverse": False}
    opt_steps = {"forward": 0, "reverse": 0}
    settled = {"forward": False, "reverse": False}
    with warnings.catch_warnings(record=True) as seen:  # Sella's IRC warns when an inner loop stalls
        warnings.simplefilter("always")
        try:
            error = _follow(ts, atoms, calc, s, branches, converged, steps, ends, opt_ok, opt_steps, stop_when,
                            relax_to, settled)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    notes = sorted({f"{w.category.__name__}: {w.message}" for w in seen})
    return IRCResult(branches["forward"], branches["reverse"], ends["forward"], ends["reverse"], converged, steps,
                     opt_ok, opt_steps, time.perf_counter() - t0, error, notes, settled)
