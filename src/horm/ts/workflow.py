"""One reaction end to end: path → TS optimisation → IRC → verdict, with a JSON record.

``run_reaction(reactant, product, calc, settings)`` runs the stages of
:mod:`horm.ts.path`, :mod:`horm.ts.tsopt`, :mod:`horm.ts.irc` and :mod:`horm.ts.verify`
in order and returns a JSON-able record: per stage its success, steps, model calls
(energy/forces and Hessian evaluations) and seconds; then the outcome, the barrier
E_TS − E_R (kcal/mol, E_R from the relaxed IRC end on the reactant side) and, when a
reference TS is given, the aligned RMSD to it (Å). A stage that fails is recorded
and the later ones are skipped; nothing is raised for a failure of the potential.

With ``out_dir`` it writes (extxyz, energies in eV) each stage's file as the stage
finishes: ``path.xyz`` (the relaxed band), ``ts.xyz``, ``ts_iterates.xyz`` (every Sella
step of the TS optimisation, its start included), ``irc.xyz`` (reverse end … TS …
forward end), and after every stage ``record.json`` (atomically), whose ``status`` is
``"running"`` until the run ends and ``"done"`` after: a killed run leaves a valid partial
record. Every record carries the settings, the horm version, charge and multiplicity and
``notes`` (e.g. a multiplicity defaulted to a doublet).

IRC fields: ``irc_converged`` — both IRC branches reached Sella's ``fmax`` within
``max_steps`` (``irc_success`` is the same value, kept for older readers);
``irc_ends_relaxed`` — both branch ends then relaxed to ``opt_fmax``. ``intended`` uses
neither flag: it compares the bond graphs of the two relaxed ends (whatever their
convergence) with the reactant and product, so it can be true while ``irc_converged`` is
false (the branch stopped at ``max_steps`` but its relaxation reached the same basin).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
import numpy as np

from horm.errors import UsageError
from horm.settings import coerce
from horm.settings import from_dict as settings_from_dict
from horm.ts.irc import IRCSettings, run_irc
from horm.ts.path import PathSettings, find_path
from horm.ts.record import (ZERO_CALLS, CallCounter, Recorder, StageHook, add_calls, apply_verdict, judge,
                             new_record, stage_line, write_frames)
from horm.ts.refine import RefineSettings
from horm.ts.tsopt import TSOptSettings, optimize_ts
from horm.ts.verify import BOND_SCALES, aligned_rmsd

__all__ = ["RunSettings", "prepare_reaction", "run_reaction", "stage_line"]

@dataclass
class RunSettings:
    path: PathSettings = field(default_factory=PathSettings)
    tsopt: TSOptSettings = field(default_factory=TSOptSettings)
    irc: IRCSettings = field(default_factory=IRCSettings)
    bond_scales: tuple[float, ...] = BOND_SCALES  # same species: graphs match at one of these scales
    refine: RefineSettings | None = None  # how a reference refines the proposal (run_reaction's ``refine``)

    @classmethod
    def from_dict(cls, d: dict | None) -> "RunSettings":
        """Build from a nested dict ({"path": {...}, "tsopt": {...}, ...}); unknown keys raise."""
        d = dict(d or {})
        kw = {}
        for name, sub in (("path", PathSettings), ("tsopt", TSOptSettings), ("irc", IRCSettings)):
            if name in d:
                kw[name] = settings_from_dict(sub, d.pop(name), name)
        if "refine" in d:
            kw["refine"] = _refine_from_dict(d.pop("refine"))
        if "bond_scales" in d:
            scales = d.pop("bond_scales")
            if not isinstance(scales, (list, tuple)) or not scales:
                raise UsageError(f"bond_scales={scales!r}: expected a list of positive numbers")
            kw["bond_scales"] = tuple(coerce(float, x, "bond_scales") for x in scales)
            if min(kw["bond_scales"]) <= 0:
                raise UsageError(f"bond_scales={scales!r}: expected a list of positive numbers")
        if d:
            raise UsageError(f"unknown TS settings {sorted(d)}; valid: path, tsopt, irc, refine, bond_scales")
        return cls(**kw)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["refine"] is None:  # records of unrefined runs keep the keys they always had
            del d["refine"]
        return d


def _refine_from_dict(d) -> RefineSettings:
    """RefineSettings from a mapping whose ``tsopt`` is a mapping of TSOptSettings fields."""
    d = dict(d) if isinstance(d, dict) else d
    if isinstance(d, dict) and "tsopt" in d:
        base = asdict(RefineSettings().tsopt)
        tsopt = d.pop("tsopt")
        if not isinstance(tsopt, dict):
            raise UsageError(f"refine.tsopt={tsopt!r}: expected a mapping of TS optimisation settings")
        ts = settings_from_dict(TSOptSettings, {**base, **tsopt}, "refine.tsopt")
        return replace(settings_from_dict(RefineSettings, d, "refine"), tsopt=ts)
    return settings_from_dict(RefineSettings, d, "refine")


def prepare_reaction(path, charge: int | None = None, multiplicity: int | None = None):
    """Read a reaction file; returns (reactant Atoms, product Atoms, notes).

    ``charge``/``multiplicity`` override what the file's comment lines say; an odd electron
    count with no multiplicity given becomes a doublet, with a note (see
    :func:`horm.label.engine.resolve_spin`).
    """
    from horm.data.xyz import read_reaction
    from horm.label.engine import resolve_spin

    r, p = read_reaction(path)
    notes = []
    for side in (r, p):
        note = resolve_spin(side, charge, multiplicity)
        if note and note not in notes:
            notes.append(note)
    return r.to_atoms(), p.to_atoms(), notes


def run_reaction(reactant, product, calc, settings: RunSettings | None = None, out_dir=None, name: str = "",
                 reference_ts=None, on_stage: StageHook | None = None, notes: list[str] | None = None,
                 refine=None, proposal_dir=None) -> dict:
    """Path → TS → IRC → verdict for one reaction (reactant, product: ASE Atoms, same atom order).

    calc: a :class:`horm.calculators.potential.HessianCalculator`; reference_ts: optional Atoms
    of the same atoms to report the aligned TS RMSD against; on_stage: see
    :data:`StageHook`; notes: lines to keep in the record (e.g. a defaulted multiplicity).
    refine: a reference-level HessianCalculator (xTB, DFT, an ASE calculator); then ``calc``
    only proposes (path and TS) and the reference refines, checks and judges the TS
    (:mod:`horm.ts.refined`, settings ``settings.refine``); ``intended`` is the reference's
    verdict; proposal_dir: take the proposer's band and TS from that earlier model-only run of
    the reaction instead of searching again. Returns the record (``status: "done"``).
    """
    s = settings or RunSettings()
    t0 = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else None
    if len(reactant) != len(product) or not np.array_equal(reactant.numbers, product.numbers):
        raise UsageError(f"{name or 'reaction'}: reactant and product must hold the same atoms in the same order")
    if proposal_dir is not None and refine is None:
        raise UsageError("proposals from an earlier run need a reference to refine them (refine=...)")
    if refine is not None and s.refine is None:
        s = replace(s, refine=RefineSettings())
    rec = new_record(reactant, calc, s, name, notes)
    rc = Recorder(rec, out, on_stage)
    total_calls = CallCounter(calc)
    if refine is not None:
        from horm.ts.refined import run_refined

        run_refined(reactant, product, calc, refine, s, rc, reference_ts, proposal_dir)
        if s.refine.fallback and _needs_fallback(rec, s.refine.fallback_when):
            _fallback(reactant, product, refine, s, rc, reference_ts, notes)
    else:
        calls = CallCounter(calc)
        pres = find_path(reactant, product, calc, s.path)
        rec["path_success"] = pres.record()["success"]
        rc.stage("path", {**pres.record(), "calls": calls.delta()}, ("path.xyz", pres.images))
        if pres.error is None:
            _ts_and_after(pres.ts_guess, reactant, product, calc, s, rc, reference_ts)
        rec["reference_calls"] = total_calls.delta(seconds=True) if calc.is_reference else dict(ZERO_CALLS)
    rec["model_calls"] = total_calls.delta()
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    rec["status"] = "done"
    rc.save()
    return rec


def _needs_fallback(rec: dict, when: str) -> bool:
    return not rec["ts_success"] or (when == "not-intended" and not rec["intended"])


def _fallback(reactant, product, reference, s: RunSettings, rc: Recorder, reference_ts, notes) -> None:
    """The reference-only search for a reaction whose refinement gave no TS (or, with
    ``fallback_when="not-intended"``, not the intended one): its files go to ``fallback/``, its
    verdict becomes the record's, its calls are added to ``reference_calls``; what the
    refinement alone gave stays under ``before_fallback``."""
    rec = rc.rec
    keys = ("outcome", "intended", "ts_success", "irc_success", "irc_converged", "irc_ends_relaxed",
            "e_ts", "e_reactant", "barrier_kcal_mol", "ts_rmsd", "conformational", "reference_calls")
    rec["before_fallback"] = {k: rec.get(k) for k in keys}
    reason = "no TS at the reference level" if not rec["ts_success"] else "the refined TS is not the intended one"
    sub_out = None if rc.out is None else rc.out / "fallback"
    if sub_out is not None:
        sub_out.mkdir(exist_ok=True)
    sub = run_reaction(reactant, product, reference, replace(s, refine=None), out_dir=sub_out, name=rec["rxn"],
                       reference_ts=reference_ts, notes=notes)
    for k in keys[:-1]:
        rec[k] = sub.get(k)
    rec["path_success"] = rec["path_success"] or sub["path_success"]
    rec["verify"] = sub.get("verify")
    rec["reference_calls"] = add_calls(rec["reference_calls"], sub["reference_calls"])
    rec["notes"].append(f"fallback: {reason}; the reference-only search ran (fallback/)")
    rc.stage("fallback", {"reason": reason, "outcome": sub["outcome"], "intended": sub["intended"],
                          "seconds": sub["seconds"], "stages": sub["stages"],
                          "reference_calls": sub["reference_calls"]})


def _ts_and_after(guess, reactant, product, calc, s: RunSettings, rc: Recorder, reference_ts) -> None:
    """TS optimisation, then (on success) IRC and the verdict, each recorded as it finishes."""
    rec = rc.rec
    calls = CallCounter(calc)
    ts = optimize_ts(guess, calc, s.tsopt)
    rec["ts_success"] = ts.success
    rec["e_ts"] = ts.energy
    if reference_ts is not None and ts.error is None:
        rec["ts_rmsd"] = aligned_rmsd(reference_ts.positions, ts.atoms.positions)
    if rc.out is not None and ts.iterates:
        write_frames(rc.out / "ts_iterates.xyz", ts.iterates)
    rc.stage("tsopt", {**ts.record(), "calls": calls.delta()}, ("ts.xyz", [ts.atoms]))
    if not ts.success:
        return
    calls = CallCounter(calc)
    irc = run_irc(ts.atoms, calc, s.irc)
    rc.stage("irc", {**irc.record(), "calls": calls.delta()}, ("irc.xyz", irc.path(ts.atoms)))
    v = judge(reactant, product, irc, s.bond_scales)
    apply_verdict(rec, v, irc, ts.energy)
    if v is not None:
        rc.stage("verify", v)
