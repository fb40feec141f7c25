"""The model proposes, the reference confirms: a proposal's TS refined on the reference's forces.

A *proposer* (a trained model: cheap forces, a Hessian) runs the path and the TS search of
:mod:`horm.ts.workflow` as usual. A *reference* (xTB, DFT, any ASE calculator: the level
of theory the user trusts, whose every call costs) then

1. re-optimises that TS with Sella on its own forces (``strategy="ts"``), or relaxes the
   proposer's band with a few climbing-image NEB steps and optimises the TS from its
   highest image (``"band"``); ``"auto"`` does the first and, when its verdict is not
   intended, the second (the verdict is the cheap test that tells, per reaction, which one
   the proposal needed);
2. checks the TS with one reference Hessian (exactly one imaginary mode: ``characterise``
   of :mod:`horm.ts.tsopt`);
3. judges it with an IRC whose ends are relaxed on the reference: ``irc="reference"``
   runs Sella's IRC on the reference; ``"reference-early"`` (the default) the same, each
   branch stopped once :func:`settled` (on R's or P's bond graph, or held on a third one:
   the rest of the branch seldom changes the verdict); ``irc="proposer"`` follows the IRC on the proposer
   from the reference's TS and relaxes only its two ends on the reference (the ends are
   what the verdict compares, so the reference pays for two short relaxations instead of
   a few hundred IRC points).

Starting Hessian of each refinement (``hessian``): ``"model"`` (the proposer's at the
start, Sella's quasi-Newton updates after, and the proposer's again when Sella asks for a
fresh one), ``"model-every"`` (the proposer's at every step) or ``"reference"`` (one
reference Hessian at the start, then updates). A proposer Hessian costs no reference call.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from horm.settings import check_choice
from horm.ts.irc import IRCResult, relax, run_irc
from horm.ts.tsopt import TSOptSettings, TSResult, optimize_ts
from horm.ts.verify import aligned_rmsd

Strategy = Literal["ts", "band", "auto"]
HessianSource = Literal["model", "model-every", "reference"]
IRCLevel = Literal["reference-early", "proposer", "reference"]
FallbackWhen = Literal["failed", "not-intended"]


def _refine_tsopt() -> TSOptSettings:
    return TSOptSettings(hessian_every=0, max_steps=50, trust_radius=0.05)


@dataclass
class RefineSettings:
    """How the reference refines and judges a proposal (see the module docstring)."""

    strategy: Strategy = "auto"
    hessian: HessianSource = "model"
    tsopt: TSOptSettings = field(default_factory=_refine_tsopt)  # the reference's Sella run
    band_steps: int = 8  # reference CI-NEB steps from the proposer's band ("band", "auto")
    irc: IRCLevel = "reference-early"  # where the IRC runs; its ends are relaxed on the reference
    settled_drop: float = 0.2  # "reference-early": a branch stops this far (eV) below the TS once its
    #                            bond graph is the reactant's or the product's
    end_fmax: float = 0.1  # reference relaxation of the IRC ends (eV/Å): the bond graphs need no more
    irc_dx: float = 0.2  # "reference-early": the IRC step (Å·amu^½), twice the full IRC's
    settled_elsewhere: int = 5  # "reference-early": a branch also stops once this many of its last points
    #                             share one bond graph that is neither R's nor P's (0: never)
    end_max_steps: int = 200  # 0: no relaxation, the verdict reads the settled IRC points themselves
    fallback: bool = False  # run the reference-only search when the refinement gives no verdict wanted
    fallback_when: FallbackWhen = "failed"  # "failed": no TS at the reference; "not-intended": also a wrong one
    audit_irc: bool = False  # also run the full reference IRC, counted apart, to check the cheap verdict

    def __post_init__(self):
        check_choice(self.strategy, Strategy, "refine strategy")
        check_choice(self.hessian, HessianSource, "refine hessian")
        check_choice(self.irc, IRCLevel, "refine irc")
        check_choice(self.fallback_when, FallbackWhen, "refine fallback_when")
        if (self.band_steps < 1 or self.end_max_steps < 0 or self.settled_elsewhere < 0 or not self.end_fmax > 0
                or not self.irc_dx > 0):
            from horm.errors import UsageError

            raise UsageError(f"refine needs band_steps >= 1, end_max_steps >= 0, settled_elsewhere >= 0, end_fmax > 0 "
                             f"and irc_dx > 0, got {self.band_steps}, {self.end_max_steps}, {self.settled_elsewhere}, "
                             f"{self.end_fmax}, {self.irc_dx}")


def refine_ts(start, proposer, reference, s: RefineSettings) -> TSResult:
    """Sella order-1 search on the reference's forces from ``start`` (Atoms); the Hessian Sella
    starts from (and refreshes with) is the proposer's or the reference's (``s.hessian``). The
    result is characterised with one reference Hessian."""
    if s.hessian == "reference":
        return optimize_ts(start, reference, s.tsopt, hessian_function=reference.get_hessian)
    tsopt = replace(s.tsopt, hessian_every=1) if s.hessian == "model-every" else s.tsopt
    return optimize_ts(start, reference, tsopt, hessian_function=proposer.get_hessian)


def relax_band(images, reference, steps: int, path_settings):
    """A few reference CI-NEB steps from a relaxed band (Atoms list, ends included); returns
    (images with reference energies, index of the highest interior image, error or None).

    The two fixed ends are evaluated once and held by single-point calculators, so each step
    costs one reference call per interior image."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.mep import NEB

    from horm.ts.path import _optimizer_class, detached, highest_interior

    band = [im.copy() for im in images]
    error = None
    energies: list[float | None] = [None] * len(band)
    try:
        for k in (0, len(band) - 1):
            band[k].calc = reference
            e, f = band[k].get_potential_energy(), band[k].get_forces()
            band[k].calc = SinglePointCalculator(band[k], energy=e, forces=f)
        for im in band[1:-1]:
            im.calc = reference
        neb = NEB(band, k=path_settings.spring, climb=True, method="improvedtangent", allow_shared_calculator=True)
        opt = _optimizer_class(path_settings.optimizer)(neb, logfile=None)
        opt.run(fmax=path_settings.fmax, steps=steps)
        energies = [float(im.get_potential_energy()) for im in band]
    except Exception as exc:  # a reference failure ends the stage, not the run
        error = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return detached(band, energies), highest_interior(energies), error


def settled(reactant, product, drop: float, scales, elsewhere: int = 0):
    """``stop_when`` for :func:`horm.ts.irc.run_irc`: the point lies ``drop`` eV below the TS
    and its bond graph is the reactant's or the product's (at one of ``scales``), or, with
    ``elsewhere > 0``, the graph of each of the branch's last ``elsewhere`` points: a branch
    settled in a third species (with 5 points, 43 of 44 cheap verdicts equalled the full IRC's
    on the README's 48 reactions)."""
    from horm.ts.verify import same_species

    def stop(atoms, e_ts: float, branch=()) -> bool:
        if float(atoms.get_potential_energy()) > e_ts - drop:
            return False
        pos = atoms.positions
        if (same_species(atoms.numbers, pos, reactant.positions, scales)
                or same_species(atoms.numbers, pos, product.positions, scales)):
            return True
        if elsewhere <= 0 or len(branch) < elsewhere:
            return False
        return all(same_species(atoms.numbers, pos, b.positions, scales) for b in branch[-elsewhere:])

    return stop


def judge_irc(ts, proposer, reference, s: RefineSettings, irc_settings, reactant=None, product=None,
              scales=None) -> IRCResult:
    """The IRC from the reference's TS, its two ends relaxed on the reference.

    ``s.irc == "reference"``: Sella's IRC on the reference (ends relaxed there to
    ``irc_settings.opt_fmax``). ``"reference-early"``: the same, but a branch stops once it
    is :func:`settled` (needs ``reactant``, ``product``, ``scales``) and its end is relaxed
    to ``s.end_fmax``. ``"proposer"``: the IRC and its end relaxations on the
    proposer, then each end relaxed on the reference to ``s.end_fmax``; the result's ends are
    the reference's and its notes say so."""
    if s.irc == "reference":
        return run_irc(ts, reference, irc_settings)
    if s.irc == "reference-early":
        res = run_irc(ts, reference, replace(irc_settings, dx=s.irc_dx),
                      stop_when=settled(reactant, product, s.settled_drop, scales, s.settled_elsewhere),
                      relax_to=(s.end_fmax, s.end_max_steps))
        elsewhere = f" or the same other graph for {s.settled_elsewhere} points" if s.settled_elsewhere else ""
        res.notes.append(f"branches stopped once settled ({s.settled_drop} eV below the TS, graph of R or P"
                         f"{elsewhere}); ends relaxed to {s.end_fmax} eV/Å")
        return res
    res = run_irc(ts, proposer, irc_settings)
    if res.error is not None:
        return res
    res.notes.append(f"IRC on the proposer; ends relaxed on the reference to {s.end_fmax} eV/Å")
    for d in ("forward", "reverse"):
        end = res.end_forward if d == "forward" else res.end_reverse
        if end is None:
            continue
        try:
            relaxed, ok, n = relax(end, reference, s.end_fmax, s.end_max_steps)
        except Exception as exc:
            res.error = f"reference relaxation of the {d} end: {type(exc).__name__}: {exc}".replace("\n", " ")
            return res
        res.opt_converged[d], res.opt_steps[d] = ok, res.opt_steps[d] + n
        if d == "forward":
            res.end_forward = relaxed
        else:
            res.end_reverse = relaxed
    return res


def proposal_rmsd(proposal, refined) -> float | None:
    """Aligned RMSD (Å) from the proposer's TS to the reference's (None when either is missing)."""
    if proposal is None or refined is None:
        return None
    return aligned_rmsd(proposal.positions, refined.positions)
