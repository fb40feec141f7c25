"""One reaction end to end: path → TS optimisation → IRC → verdict, with a JSON record.

``run_reaction(reactant, product, calc, settings)`` runs the stages of
:mod:`horm.ts.path`, :mod:`horm.ts.tsopt`, :mod:`horm.ts.irc` and :mod:`horm.ts.verify`
in order and returns a JSON-able record: per stage its success, steps, model calls
(energy/forces and Hessian evaluations) and seconds; then the outcome, the barrier
E_TS − E_R (kcal/mol, E_R from the relaxed IRC end on the reactant side) and, when a
reference TS is given, the aligned RMSD to it (Å). A stage that fails is recorded
and the later ones are skipped; nothing is raised for a failure of the potential.

With ``out_dir`` it writes (extxyz, energies in eV) ``path.xyz`` (the relaxed band), ``ts.xyz``, ``irc.xyz``
(reverse end … TS … forward end) and ``record.json`` (written last, atomically: its
presence means the reaction finished).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from horm.data.sample import Sample
from horm.errors import UsageError
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


def write_json_atomic(path: Path, obj) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=_json_default))
    os.replace(tmp, path)
    return path


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-able: {type(o).__name__}")


def run_reaction(reactant, product, calc, settings: RunSettings | None = None, out_dir=None, name: str = "",
                 reference_ts=None) -> dict:
    """Path → TS → IRC → verdict for one reaction (reactant, product: ASE Atoms, same atom order).

    calc: a :class:`horm.ts.calculator.HessianCalculator`; reference_ts: optional Atoms
    of the same atoms to report the aligned TS RMSD against. Returns the record.
    """
    s = settings or RunSettings()
    t0 = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else None
    if len(reactant) != len(product) or not np.array_equal(reactant.numbers, product.numbers):
        raise UsageError(f"{name or 'reaction'}: reactant and product must hold the same atoms in the same order")
    symbols = reactant.get_chemical_formula(mode="hill")
    rec: dict = {"version": RECORD_VERSION, "rxn": name, "natoms": len(reactant), "formula": symbols,
                 "potential": getattr(calc, "potential_name", type(calc).__name__), "status": "done",
                 "stages": {}, "path_success": False, "ts_success": False, "irc_success": False,
                 "outcome": None, "intended": False, "conformational": None, "e_ts": None,
                 "e_reactant": None, "barrier_kcal_mol": None, "ts_rmsd": None}

    total_calls = _Calls(calc)
    calls = _Calls(calc)
    pres = find_path(reactant, product, calc, s.path)
    rec["stages"]["path"] = {**pres.record(), "calls": calls.delta()}
    rec["path_success"] = pres.record()["success"]
    if out is not None:
        write_frames(out / "path.xyz", pres.images)

    if pres.error is None:
        calls = _Calls(calc)
        ts = optimize_ts(pres.ts_guess, calc, s.tsopt)
        rec["stages"]["tsopt"] = {**ts.record(), "calls": calls.delta()}
        rec["ts_success"] = ts.success
        rec["e_ts"] = ts.energy
        if out is not None:
            write_frames(out / "ts.xyz", [ts.atoms])
        if reference_ts is not None and ts.error is None:
            rec["ts_rmsd"] = aligned_rmsd(reference_ts.positions, ts.atoms.positions)
        if ts.success:
            calls = _Calls(calc)
            irc = run_irc(ts.atoms, calc, s.irc)
            rec["stages"]["irc"] = {**irc.record(), "calls": calls.delta()}
            rec["irc_success"] = irc.success
            if out is not None:
                write_frames(out / "irc.xyz", irc.path(ts.atoms))
            if irc.success:
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
    rec["model_calls"] = total_calls.delta()
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    if out is not None:
        write_json_atomic(out / "record.json", rec)
    return rec
