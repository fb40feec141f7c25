"""The JSON record of one TS search, written as it grows: header, per-stage calls, files.

A record is a plain dict (what ``record.json`` and each line of a benchmark's
``results.jsonl`` hold). :func:`new_record` makes its header with every outcome unset;
:class:`Recorder` adds each stage as it finishes and rewrites ``record.json`` atomically
(``status: "running"`` until the end), so a killed run leaves a valid partial record.

Calls are counted per calculator (:class:`CallCounter`): ``model_calls`` are the
proposer's (``{"energy_forces": n, "hessian": m}``), ``reference_calls`` the
reference-level calculator's (``{"energy_forces": n, "hessian": m, "seconds": s}``, s the
wall time inside its evaluations). A run on xTB, DFT or an ASE calculator alone is its own
reference, so there the two agree; a model-only run has zero reference calls. Every run
thus compares on ``reference_calls``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from horm.data.sample import Sample
from horm.safe_io import write_json_atomic

RECORD_VERSION = 1

ZERO_CALLS = {"energy_forces": 0, "hessian": 0, "seconds": 0.0}


def _counts(calc) -> dict:
    out = {k: int(v) for k, v in getattr(calc, "counts", {}).items()}
    out["seconds"] = float(getattr(calc, "seconds", 0.0))
    return out


class CallCounter:
    """A calculator's call-count deltas since the counter was made."""

    def __init__(self, calc):
        self.calc = calc
        self.start = _counts(calc)

    def delta(self, seconds: bool = False) -> dict:
        """Counts since the start (ints); with ``seconds``, the evaluation time too (s)."""
        now = _counts(self.calc)
        out = {k: int(v - self.start.get(k, 0)) for k, v in now.items() if k != "seconds"}
        if seconds:
            out["seconds"] = round(now["seconds"] - self.start["seconds"], 3)
        return out


def add_calls(a: dict, b: dict) -> dict:
    """Two call dicts summed key by key (seconds rounded to ms)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    if "seconds" in out:
        out["seconds"] = round(float(out["seconds"]), 3)
    return out


def write_frames(path: Path, atoms_list) -> Path:
    """extxyz frames with ``energy`` (eV) where known (horm.data.xyz.write_extxyz)."""
    from horm.data.xyz import write_extxyz

    samples = []
    for a in atoms_list:
        e = a.info.get("energy")
        samples.append(Sample(numbers=np.asarray(a.numbers, dtype=np.int64), pos=np.array(a.positions),
                              energy=None if e is None else float(e)))
    return write_extxyz(path, samples)


StageHook = Callable[[str, dict, dict], None]
"""``on_stage(name, stage_record, record)``: called as each stage finishes (name: path, tsopt,
refine, irc, verify, fallback)."""


class Recorder:
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
            self.save()
        if self.on_stage is not None:
            self.on_stage(name, info, self.rec)

    def save(self) -> None:
        if self.out is not None:
            write_json_atomic(self.out / "record.json", self.rec)


def new_record(reactant, calc, settings, name: str = "", notes: list[str] | None = None) -> dict:
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


def reference_calls_of(rec: dict) -> dict | None:
    """A record's ``reference_calls``; for records written before the field existed, the
    ``model_calls`` of a run on xTB or DFT (None for an older model-only record)."""
    if rec.get("reference_calls") is not None:
        return rec["reference_calls"]
    if rec.get("potential") in ("xtb", "dft") and rec.get("model_calls") is not None:
        return {**rec["model_calls"], "seconds": None}
    return None


def judge(reactant, product, irc, scales) -> dict | None:
    """The bond-graph verdict on an IRC's relaxed ends (:func:`horm.ts.verify.verify_irc`);
    None when the IRC failed or an end is missing."""
    from horm.ts.verify import verify_irc

    if irc.error is not None or irc.end_forward is None or irc.end_reverse is None:
        return None
    return verify_irc(reactant.numbers, reactant.positions, product.positions,
                      irc.end_forward.positions, irc.end_reverse.positions, scales)


def apply_verdict(rec: dict, v: dict | None, irc, e_ts: float | None) -> None:
    """The IRC flags, the verdict ``v`` (or none) and the barrier into the record."""
    from horm.ts.verify import barrier_kcal_mol

    rec["irc_converged"] = rec["irc_success"] = irc.converged_both
    rec["irc_ends_relaxed"] = irc.ends_relaxed
    rec["verify"] = v
    rec["outcome"] = None if v is None else v["outcome"]
    rec["intended"] = v is not None and v["outcome"] == "intended"
    rec["conformational"] = None if v is None else v["conformational"]
    rec["e_reactant"] = rec["barrier_kcal_mol"] = None
    if v is not None and v["reactant_end"] is not None:
        end = irc.end_forward if v["reactant_end"] == "a" else irc.end_reverse
        rec["e_reactant"] = end.info.get("energy")
        if rec["e_reactant"] is not None and e_ts is not None:
            rec["barrier_kcal_mol"] = barrier_kcal_mol(e_ts, rec["e_reactant"])


def _ok(flag) -> str:
    return "ok" if flag else "FAILED"


def stage_line(name: str, st: dict, rec: dict) -> str:
    """One line for a finished stage: what it found, its key numbers and its time."""
    err = f"  {st['error']}" if st.get("error") else ""
    if name == "path":
        return (f"path    {_ok(st['success'])}  {st['steps']} steps, {st['interpolation']}, "
                f"TS guess at image {st['ts_index']}  {st['seconds']:.1f} s{err}")
    if name.startswith("refine-"):
        fmax = "-" if st.get("fmax") is None else f"{st['fmax']:.3f}"
        rmsd = "-" if st.get("rmsd_from_proposal") is None else f"{st['rmsd_from_proposal']:.3f} Å"
        rc = st["reference_calls"]
        return (f"refine  {_ok(st['success'])}  {st['strategy']}: {st['steps']} steps, fmax {fmax} eV/Å, "
                f"{st.get('n_imaginary')} imaginary, {rmsd} from the proposal, reference {rc['energy_forces']} "
                f"calls + {rc['hessian']} Hessians  {st['seconds']:.1f} s{err}")
    if name.startswith("irc-"):
        rc = st["reference_calls"]
        return (f"IRC     {st['outcome']}  on the {st['level']}, ends relaxed {st['opt_converged']['forward']} / "
                f"{st['opt_converged']['reverse']}, reference {rc['energy_forces']} calls  {st['seconds']:.1f} s{err}")
    if name == "fallback":
        rc = st["reference_calls"]
        return (f"fallback  {st['reason']}: reference-only search {st['outcome']}, {rc['energy_forces']} calls "
                f"+ {rc['hessian']} Hessians  {st['seconds']:.1f} s")
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
