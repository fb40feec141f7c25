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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from horm.data.sample import Sample
from horm.errors import UsageError
from horm.safe_io import write_json_atomic
from horm.settings import coerce
from horm.settings import from_dict as settings_from_dict
from horm.ts.irc import IRCSettings, run_irc
from horm.ts.path import PathSettings, find_path
from horm.ts.tsopt import TSOptSettings, optimize_ts
from horm.ts.verify import BOND_SCALES, aligned_rmsd, barrier_kcal_mol, verify_irc

RECORD_VERSION = 1


@dataclass
class RunSettings:
    path: PathSettings = field(default_factory=PathSettings)
    tsopt: TSOptSettings = field(default_factory=TSOptSettings)
    irc: IRCSettings = field(default_factory=IRCSettings)
    bond_scales: tuple[float, ...] = BOND_SCALES  # same species: graphs match at one of these scales

    @classmethod
    def from_dict(cls, d: dict | None) -> "RunSettings":
        """Build from a nested dict ({"path": {...}, "tsopt": {...}, ...}); unknown keys raise."""
        d = dict(d or {})
        kw = {}
        for name, sub in (("path", PathSettings), ("tsopt", TSOptSettings), ("irc", IRCSettings)):
            if name in d:
                kw[name] = settings_from_dict(sub, d.pop(name), name)
        if "bond_scales" in d:
            scales = d.pop("bond_scales")
            if not isinstance(scales, (list, tuple)) or not scales:
                raise UsageError(f"bond_scales={scales!r}: expected a list of positive numbers")
            kw["bond_scales"] = tuple(coerce(float, x, "bond_scales") for x in scales)
            if min(kw["bond_scales"]) <= 0:
                raise UsageError(f"bond_scales={scales!r}: expected a list of positive numbers")
        if d:
            raise UsageError(f"unknown TS settings {sorted(d)}; valid: path, tsopt, irc, bond_scales")
        return cls(**kw)

    def to_dict(self) -> dict:
        return asdict(self)


class _Calls:
    """Model-call counter deltas around one stage."""

    def __init__(self, calc):
        self.calc = calc
        self.start = dict(getattr(calc, "counts", {}))

    def delta(self) -> dict:
        now = getattr(self.calc, "counts", {})
        return {k: int(now.get(k, 0) - self.start.get(k, 0)) for k in now}


def write_frames(path: Path, atoms_list) -> Path:
    """extxyz frames with ``energy`` (eV) where known (horm.data.xyz.write_extxyz)."""
    from horm.data.xyz import write_extxyz

    samples = []
    for a in atoms_list:
        e = a.info.get("energy")
        samples.append(Sample(numbers=np.asarray(a.numbers, dtype=np.int64), pos=np.array(a.positions),
                              energy=None if e is None else float(e)))
    return write_extxyz(path, samples)


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


StageHook = Callable[[str, dict, dict], None]
"""``on_stage(name, stage_record, record)``: called as each stage finishes (name: path, tsopt, irc, verify)."""


class _Recorder:
    """The growing record of one run: after each stage its files and a partial ``record.json``
    (``status: "running"``) are written atomically, so a killed run leaves a valid record."""

    def __init__(self, rec: dict, out: Path | None, on_stage: StageHook | None):
        self.rec, self.out, self.on_stage = rec, out, on_stage

    def stage(self, name: str, info: dict, frames: tuple[str, list] | None = None) -> None:
        if name != "verify":
            self.rec["stages"][name] = info
        if self.out is not None:
            if frames is not None:
                write_frames(self.out / frames[0], frames[1])
            write_json_atomic(self.out / "record.json", self.rec)
        if self.on_stage is not None:
            self.on_stage(name, info, self.rec)


def new_record(reactant, calc, settings: RunSettings, name: str = "", notes: list[str] | None = None) -> dict:
    """The record's header (identity, settings, horm version) with every outcome still unset."""
    from horm._version import __version__

    return {"version": RECORD_VERSION, "horm_version": __version__, "rxn": name, "natoms": len(reactant),
            "formula": reactant.get_chemical_formula(mode="hill"),
            "potential": getattr(calc, "potential_name", type(calc).__name__),
            "charge": int(reactant.info.get("charge", 0)), "multiplicity": int(reactant.info.get("multiplicity", 1)),
            "settings": settings.to_dict(), "notes": list(notes or []), "status": "running", "stages": {},
            "path_success": False, "ts_success": False, "irc_success": False, "irc_converged": False,
            "irc_ends_relaxed": False, "outcome": None, "intended": False, "conformational": None, "e_ts": None,
            "e_reactant": None, "barrier_kcal_mol": None, "ts_rmsd": None}


def run_reaction(reactant, product, calc, settings: RunSettings | None = None, out_dir=None, name: str = "",
                 reference_ts=None, on_stage: StageHook | None = None, notes: list[str] | None = None) -> dict:
    """Path → TS → IRC → verdict for one reaction (reactant, product: ASE Atoms, same atom order).

    calc: a :class:`horm.calculators.potential.HessianCalculator`; reference_ts: optional Atoms
    of the same atoms to report the aligned TS RMSD against; on_stage: see
    :data:`StageHook`; notes: lines to keep in the record (e.g. a defaulted multiplicity).
    Returns the record (``status: "done"``).
    """
    s = settings or RunSettings()
    t0 = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else None
    if len(reactant) != len(product) or not np.array_equal(reactant.numbers, product.numbers):
        raise UsageError(f"{name or 'reaction'}: reactant and product must hold the same atoms in the same order")
    rec = new_record(reactant, calc, s, name, notes)
    rc = _Recorder(rec, out, on_stage)
    total_calls = _Calls(calc)
    calls = _Calls(calc)
    pres = find_path(reactant, product, calc, s.path)
    rec["path_success"] = pres.record()["success"]
    rc.stage("path", {**pres.record(), "calls": calls.delta()}, ("path.xyz", pres.images))
    if pres.error is None:
        _ts_and_after(pres.ts_guess, reactant, product, calc, s, rc, reference_ts)
    rec["model_calls"] = total_calls.delta()
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    rec["status"] = "done"
    if out is not None:
        write_json_atomic(out / "record.json", rec)
    return rec


def _ts_and_after(guess, reactant, product, calc, s: RunSettings, rc: _Recorder, reference_ts) -> None:
    """TS optimisation, then (on success) IRC and the verdict, each recorded as it finishes."""
    rec = rc.rec
    calls = _Calls(calc)
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
    calls = _Calls(calc)
    irc = run_irc(ts.atoms, calc, s.irc)
    rec["irc_converged"] = irc.converged_both
    rec["irc_ends_relaxed"] = irc.ends_relaxed
    rec["irc_success"] = irc.converged_both
    rc.stage("irc", {**irc.record(), "calls": calls.delta()}, ("irc.xyz", irc.path(ts.atoms)))
    if irc.error is not None or irc.end_forward is None or irc.end_reverse is None:
        return
    v = verify_irc(reactant.numbers, reactant.positions, product.positions,
                   irc.end_forward.positions, irc.end_reverse.positions, s.bond_scales)
    rec["verify"] = v
    rec["outcome"] = v["outcome"]
    rec["intended"] = v["outcome"] == "intended"
    rec["conformational"] = v["conformational"]
    if v["reactant_end"] is not None:
        end = irc.end_forward if v["reactant_end"] == "a" else irc.end_reverse
        rec["e_reactant"] = end.info.get("energy")
        if rec["e_reactant"] is not None and ts.energy is not None:
            rec["barrier_kcal_mol"] = barrier_kcal_mol(ts.energy, rec["e_reactant"])
    rc.stage("verify", v)


def _ok(flag) -> str:
    return "ok" if flag else "FAILED"


def stage_line(name: str, st: dict, rec: dict) -> str:
    """One line for a finished stage: what it found, its key numbers and its time."""
    err = f"  {st['error']}" if st.get("error") else ""
    if name == "path":
        return (f"path    {_ok(st['success'])}  {st['steps']} steps, {st['interpolation']}, "
                f"TS guess at image {st['ts_index']}  {st['seconds']:.1f} s{err}")
    if name == "tsopt":
        imag = st.get("imaginary_freqs_cm1") or []
        nu = f", ν = {imag[0]:.0f} cm⁻¹" if imag else ""
        fmax = "-" if st.get("fmax") is None else f"{st['fmax']:.3f}"
        return (f"TS      {_ok(st['success'])}  {st['steps']} steps, fmax {fmax} eV/Å, "
                f"{st.get('n_imaginary')} imaginary{nu}  {st['seconds']:.1f} s{err}")
    if name == "irc":
        c, o = st["converged"], st["opt_converged"]
        return (f"IRC     {_ok(st['converged_both'])}  converged forward {c['forward']} / reverse {c['reverse']}, "
                f"ends relaxed {o['forward']} / {o['reverse']}  {st['seconds']:.1f} s{err}")
    bar = rec.get("barrier_kcal_mol")
    return (f"verify  {st['outcome']}{' (conformational)' if st.get('conformational') else ''}, "
            f"barrier {'-' if bar is None else f'{bar:.2f} kcal/mol'}")
