"""One reaction, the model proposing and the reference confirming (stages of :mod:`horm.ts.refine`).

``run_refined(reactant, product, proposer, reference, settings, recorder, reference_ts)``
fills the record that :func:`horm.ts.workflow.run_reaction` (with ``refine=``) returns:

- ``path`` and ``tsopt``: the proposer's band and TS, as in a model-only run
  (``ts_proposal.xyz``); the proposer's TS stage goes under ``proposal`` too;
- per attempt (``refine-ts``, then ``refine-band`` when ``strategy="auto"`` and the first
  was not intended): the reference's TS optimisation (its RMSD from the proposal, its
  reference and proposer calls), and ``irc-ts`` / ``irc-band`` with the verdict;
- the record's TS fields, IRC flags and ``intended`` are those of the attempt kept (the
  first intended one, else the last that found a TS, else the last); ``ts.xyz`` and
  ``irc.xyz`` are its files;
- ``reference_calls`` counts every reference evaluation; with ``audit_irc`` the full
  reference IRC also runs, counted apart under ``audit``, with whether it agrees.
"""

from __future__ import annotations

from horm.ts.path import find_path
from horm.ts.record import CallCounter, Recorder, apply_verdict, judge, write_frames
from horm.ts.refine import judge_irc, proposal_rmsd, refine_ts, relax_band
from horm.ts.tsopt import optimize_ts
from horm.ts.verify import aligned_rmsd


def _calls(proposer_counter: CallCounter, reference_counter: CallCounter) -> dict:
    return {"calls": proposer_counter.delta(), "reference_calls": reference_counter.delta(seconds=True)}


def _attempt(strategy: str, band, proposal, proposer, reference, s, rc: Recorder, reactant, product) -> dict:
    """One refinement (``"ts"``: from the proposer's TS; ``"band"``: reference CI-NEB steps from
    the proposer's band, then the TS from its highest image), its IRC and verdict."""
    rs = s.refine
    pc, rfc = CallCounter(proposer), CallCounter(reference)
    band_info = None
    if strategy == "ts":
        start = proposal
    else:
        images, idx, err = relax_band(band, reference, rs.band_steps, s.path)
        band_info = {"steps": rs.band_steps, "ts_index": idx, "error": err,
                     "energies": [im.info.get("energy") for im in images]}
        if rc.out is not None:
            write_frames(rc.out / "path_reference.xyz", images)
        start = images[idx]
    ts = refine_ts(start, proposer, reference, rs)
    info = {**ts.record(), "strategy": strategy, "hessian": rs.hessian, "band": band_info,
            "rmsd_from_proposal": proposal_rmsd(proposal, ts.atoms if ts.error is None else None),
            **_calls(pc, rfc)}
    if rc.out is not None and ts.iterates:
        write_frames(rc.out / f"refine_{strategy}_iterates.xyz", ts.iterates)
    rc.stage(f"refine-{strategy}", info, (f"ts_refined_{strategy}.xyz", [ts.atoms]))
    att = {"strategy": strategy, "ts": ts, "irc": None, "verdict": None, "intended": False}
    if not ts.success:
        return att
    pc, rfc = CallCounter(proposer), CallCounter(reference)
    irc = judge_irc(ts.atoms, proposer, reference, rs, s.irc, reactant, product, s.bond_scales)
    v = judge(reactant, product, irc, s.bond_scales)
    rc.stage(f"irc-{strategy}", {**irc.record(), "level": rs.irc, "outcome": None if v is None else v["outcome"],
                                 **_calls(pc, rfc)})
    att.update(irc=irc, verdict=v, intended=v is not None and v["outcome"] == "intended")
    return att


def _keep(attempts: list[dict]) -> dict:
    for pick in (lambda a: a["intended"], lambda a: a["ts"].success):
        for a in attempts:
            if pick(a):
                return a
    return attempts[-1]


def _audit(att: dict, reference, s, rec: dict, reactant, product) -> dict:
    """The full reference IRC from the kept TS, to check the cheap verdict; its calls apart."""
    from horm.ts.irc import run_irc

    rfc = CallCounter(reference)
    irc = run_irc(att["ts"].atoms, reference, s.irc)
    v = judge(reactant, product, irc, s.bond_scales)
    outcome = None if v is None else v["outcome"]
    return {"outcome": outcome, "intended": outcome == "intended", "agrees": outcome == rec["outcome"],
            "reference_calls": rfc.delta(seconds=True)}


def run_refined(reactant, product, proposer, reference, s, rc: Recorder, reference_ts, proposal_dir=None) -> None:
    """Proposer path and TS, then the reference's refinement, check and verdict, into ``rc.rec``.

    proposal_dir: an earlier run of this reaction by the same proposer, model-only (``path.xyz``,
    ``ts.xyz``, ``record.json``) or refined (``ts_proposal.xyz``): its band and TS are taken
    instead of searching again (stages marked ``reused``; their calls were paid there)."""
    rec = rc.rec
    rec["reference"] = getattr(reference, "potential_name", type(reference).__name__)
    rec["proposal"] = None
    rfc_total = CallCounter(reference)
    if proposal_dir is not None:
        band, proposal = _reuse(proposal_dir, reactant, rc)
    else:
        band, proposal = _propose(reactant, product, proposer, s, rc, reference_ts)
    if proposal is not None:
        confirm(band, proposal, reactant, product, proposer, reference, s, rc, reference_ts)
    rec["reference_calls"] = rfc_total.delta(seconds=True)
    if rec.get("audit") is not None:  # the audit checks the method; it is not part of its cost
        rec["reference_calls"] = {k: (round(v - rec["audit"]["reference_calls"].get(k, 0), 3) if k == "seconds"
                                      else v - rec["audit"]["reference_calls"].get(k, 0))
                                  for k, v in rec["reference_calls"].items()}
    if rec["reference_calls"].get("hessian_force_calls"):
        rec["notes"].append("the reference has no Hessian: each finite-difference Hessian counts once under "
                            "hessian and as its 6N force calls under hessian_force_calls")
    rc.save()


def _propose(reactant, product, proposer, s, rc: Recorder, reference_ts):
    """The proposer's band and TS search (stages ``path``, ``tsopt``); (band, TS Atoms or None)."""
    rec = rc.rec
    pc = CallCounter(proposer)
    pres = find_path(reactant, product, proposer, s.path)
    rec["path_success"] = pres.record()["success"]
    rc.stage("path", {**pres.record(), "level": "proposer", "calls": pc.delta()}, ("path.xyz", pres.images))
    if pres.error is not None:
        return pres.images, None
    pc = CallCounter(proposer)
    ts = optimize_ts(pres.ts_guess, proposer, s.tsopt)
    rec["proposal"] = {"ts_success": ts.success, "e_ts": ts.energy, "fmax": ts.fmax, "n_imaginary": ts.n_imaginary}
    if reference_ts is not None and ts.error is None:
        rec["proposal"]["ts_rmsd"] = aligned_rmsd(reference_ts.positions, ts.atoms.positions)
    rc.stage("tsopt", {**ts.record(), "level": "proposer", "calls": pc.delta()}, ("ts_proposal.xyz", [ts.atoms]))
    return pres.images, (ts.atoms if ts.error is None else None)


def _reuse(proposal_dir, reactant, rc: Recorder):
    """Band and TS of an earlier model-only run (None as the TS when it found none)."""
    import json
    from pathlib import Path

    from horm.data.xyz import read_xyz
    from horm.errors import DataError

    d, rec = Path(proposal_dir), rc.rec
    try:
        old = json.loads((d / "record.json").read_text())
        band = [x.to_atoms() for x in read_xyz(d / "path.xyz")]
        name = "ts_proposal.xyz" if (d / "ts_proposal.xyz").is_file() else "ts.xyz"  # a refined run's, or a model run's
        ts = read_xyz(d / name)[0].to_atoms() if (d / name).is_file() else None
    except (OSError, ValueError) as exc:
        raise DataError(str(d), f"not a finished TS search to take proposals from ({type(exc).__name__})") from None
    if len(band[0]) != len(reactant) or not all(len(a) == len(reactant) for a in band):
        raise DataError(str(d), "its band holds other atoms than the reaction")
    for a in (*band, *([ts] if ts is not None else [])):
        a.info.update({k: reactant.info[k] for k in ("charge", "multiplicity") if k in reactant.info})
    st = old.get("stages", {})
    rec["path_success"] = bool(old.get("path_success"))
    frames = {"path": ("path.xyz", band), "tsopt": ("ts_proposal.xyz", [ts]) if ts is not None else None}
    for name in ("path", "tsopt"):
        if name in st:
            rc.stage(name, {**st[name], "level": "proposer", "reused": str(d),
                            "calls": {"energy_forces": 0, "hessian": 0}}, frames[name])
    if old.get("proposal") is not None:  # a refined run: its proposer's part
        rec["proposal"] = {**old["proposal"], "reused": str(d)}
    elif "tsopt" in st:  # a model-only run: its own verdict is the proposer's
        rec["proposal"] = {"ts_success": bool(old.get("ts_success")), "e_ts": old.get("e_ts"),
                           "fmax": st["tsopt"].get("fmax"), "n_imaginary": st["tsopt"].get("n_imaginary"),
                           "intended": old.get("intended"), "outcome": old.get("outcome"), "reused": str(d)}
    return band, ts


def confirm(band, proposal, reactant, product, proposer, reference, s, rc: Recorder, reference_ts=None) -> None:
    """The reference's part from a proposal (``band``: the proposer's relaxed band, Atoms with
    the ends; ``proposal``: its TS Atoms): the attempts of ``s.refine.strategy``, the kept one's
    TS, IRC and verdict into ``rc.rec`` (and, with ``audit_irc``, the full reference IRC)."""
    rec = rc.rec
    attempts: list[dict] = []
    for strategy in {"ts": ("ts",), "band": ("band",), "auto": ("ts", "band")}[s.refine.strategy]:
        attempts.append(_attempt(strategy, band, proposal, proposer, reference, s, rc, reactant, product))
        if attempts[-1]["intended"]:
            break
    att = _keep(attempts)
    ts = att["ts"]
    rec["refined_with"] = att["strategy"]
    rec["ts_success"], rec["e_ts"] = ts.success, ts.energy
    rec["refine_rmsd"] = proposal_rmsd(proposal, ts.atoms if ts.error is None else None)
    if reference_ts is not None and ts.error is None:
        rec["ts_rmsd"] = aligned_rmsd(reference_ts.positions, ts.atoms.positions)
    if rc.out is not None:
        write_frames(rc.out / "ts.xyz", [ts.atoms])
        if att["irc"] is not None:
            write_frames(rc.out / "irc.xyz", att["irc"].path(ts.atoms))
    if att["irc"] is not None:
        apply_verdict(rec, att["verdict"], att["irc"], ts.energy)
        if att["verdict"] is not None:
            rc.stage("verify", att["verdict"])
    if s.refine.audit_irc and ts.success:
        rec["audit"] = _audit(att, reference, s, rec, reactant, product)
