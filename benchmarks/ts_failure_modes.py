"""Why is a model's TS search not ``intended``? Re-judge its saddles on the reference surface.

``horm ts benchmark`` says which stage failed (path, TS, IRC), but an ``R-unintended`` or
``unintended`` outcome after a converged IRC can have two causes:

- the model's saddle is the wrong one (another reaction, or no saddle of the reference at all);
- the saddle is right, but the model's IRC valleys lead elsewhere.

For every reaction whose model IRC finished without ``intended``, this takes the model's TS
(``ts.xyz`` of the benchmark folder) and runs the reference's own IRC from it (same settings
as the workflow: Sella IRC, relaxed ends, graph verdict). When the reference IRC from the
model's TS is ``intended``, the saddle was right and the model's valleys were not.

With ``--reference-bench`` (the reference's own benchmark folder) it also asks whether the
model's path stage is to blame: on every reaction the reference finds intended, the model's
TS optimisation and IRC start from the reference path's highest image instead of the model's.
``--from-reference-ts`` adds a run from the reference's converged TS: if the model's saddle search
then stays near it (small RMSD) and its IRC is intended, the model's surface has the reference's
saddle and only its basin is wrong; if it wanders off, the model's surface lacks that saddle:

    python benchmarks/ts_failure_modes.py REACTIONS_DIR BENCH_DIR [BENCH_DIR ...] \\
        [--reference xtb] [--reference-bench XTB_BENCH_DIR --potential MODEL ... [--from-reference-ts]] \\
        [--dtype float32]

BENCH_DIR is a ``horm ts benchmark`` output folder (one ``rxn*/record.json`` per reaction);
``--potential`` names the model of each BENCH_DIR, in the same order.
Run it only on reactions that are not used to choose models or settings.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path


def failed_after_irc(bench: Path) -> list[str]:
    """Reactions whose model IRC finished (both ends relaxed) with an outcome other than intended."""
    out = []
    for rec_path in sorted(bench.glob("*/record.json")):
        rec = json.loads(rec_path.read_text())
        if rec.get("outcome") not in (None, "intended") and (rec_path.parent / "ts.xyz").is_file():
            out.append(rec_path.parent.name)
    return out


def irc_outcome(ts, calc, reaction: Path) -> str:
    """IRC from ``ts`` with ``calc`` and the workflow's graph verdict against the reaction's R and P
    (``IRC failed (...)`` when the IRC ends in an error or without both ends)."""
    from horm.ts.irc import run_irc
    from horm.ts.verify import verify_irc
    from horm.ts.workflow import prepare_reaction

    r, p, _ = prepare_reaction(reaction)
    irc = run_irc(ts, calc)
    if irc.error is not None or irc.end_forward is None or irc.end_reverse is None:
        return f"IRC failed ({irc.error or 'no end'})"[:60]
    return verify_irc(r.numbers, r.positions, p.positions, irc.end_forward.positions,
                      irc.end_reverse.positions)["outcome"]


def rejudge(reactions: Path, bench: Path, calc, names: list[str]) -> dict[str, dict]:
    """Reference IRC from each model TS; ``{rxn: {"model": outcome, "reference_irc": outcome, "seconds": s}}``."""
    from ase.io import read

    res = {}
    for name in names:
        t0 = time.perf_counter()
        model_outcome = json.loads((bench / name / "record.json").read_text())["outcome"]
        outcome = irc_outcome(read(bench / name / "ts.xyz"), calc, reactions / f"{name}.xyz")
        res[name] = {"model": model_outcome, "reference_irc": outcome, "seconds": time.perf_counter() - t0}
    return res


def from_reference(reactions: Path, ref_bench: Path, calc, start: str = "path") -> dict[str, dict]:
    """Model TS optimisation + IRC on the reactions the reference finds intended, started from the
    reference path's highest image (``start="path"``) or from the reference's converged TS
    (``start="ts"``: does the model's surface have that saddle at all?); ``{rxn: {"outcome": ...,
    "rmsd_to_reference_ts": Å or None}}`` (outcome ``TS failed`` when the saddle search fails)."""
    from ase.io import read

    from horm.ts.tsopt import optimize_ts
    from horm.ts.verify import aligned_rmsd

    out = {}
    for rec_path in sorted(ref_bench.glob("*/record.json")):
        rec = json.loads(rec_path.read_text())
        if not rec.get("intended"):
            continue
        name = rec_path.parent.name
        ref_ts = read(rec_path.parent / "ts.xyz")
        guess = ref_ts.copy() if start == "ts" else \
            read(rec_path.parent / "path.xyz", index=rec["stages"]["path"]["ts_index"])
        ts = optimize_ts(guess, calc)
        outcome = irc_outcome(ts.atoms, calc, reactions / f"{name}.xyz") if ts.success else "TS failed"
        rmsd = float(aligned_rmsd(ref_ts.positions, ts.atoms.positions)) if ts.success else None
        out[name] = {"outcome": outcome, "rmsd_to_reference_ts": rmsd}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reactions", type=Path, help="the reaction files the benchmark ran on")
    ap.add_argument("bench", type=Path, nargs="+", help="horm ts benchmark output folders")
    ap.add_argument("--reference", default="xtb")
    ap.add_argument("--reference-bench", type=Path, help="the reference's own benchmark folder")
    ap.add_argument("--potential", action="append", default=[], help="the model of each BENCH_DIR, in order")
    ap.add_argument("--dtype", default="float32", help="model dtype, as the benchmark ran")
    ap.add_argument("--from-reference-ts", action="store_true",
                    help="with --reference-bench: also start each model's TS search from the reference's converged TS")
    ap.add_argument("--json", type=Path, help="write every verdict here")
    a = ap.parse_args(argv)
    if a.from_reference_ts and a.reference_bench is None:
        ap.error("--from-reference-ts needs --reference-bench (the reference's own benchmark folder)")
    if a.reference_bench is not None and len(a.potential) != len(a.bench):
        ap.error("--reference-bench needs one --potential per BENCH_DIR")
    for d in (a.reactions, *a.bench, *([a.reference_bench] if a.reference_bench else [])):
        if not d.is_dir():
            ap.error(f"{d}: no such folder")
    import torch

    from horm.calculators.potential import load_potential

    torch.set_num_threads(1)
    calc = load_potential(a.reference, threads=1)
    everything = {}
    print(f"{'benchmark':42s} {'IRC, not intended':>17s} {'ref IRC intended':>16s} {'s':>6s}  reference outcomes")
    for bench in a.bench:
        names = failed_after_irc(bench)
        t0 = time.perf_counter()
        res = rejudge(a.reactions, bench, calc, names)
        everything[str(bench)] = res
        _save(a.json, everything)
        n_ok = sum(v["reference_irc"] == "intended" for v in res.values())
        counts = Counter(v["reference_irc"] for v in res.values())
        print(f"{str(bench)[-42:]:42s} {len(names):17d} {n_ok:16d} {time.perf_counter() - t0:6.0f}  "
              + ", ".join(f"{k} {n}" for k, n in counts.most_common()), flush=True)
    if a.reference_bench is not None:
        for start in ("path", "ts") if a.from_reference_ts else ("path",):
            _from_reference_table(a, start, everything)


def _from_reference_table(a, start: str, everything: dict) -> None:
    """One line per model: its TS search and IRC started from the reference's path guess or TS."""
    import statistics

    from horm.calculators.potential import load_potential

    where = "path guess" if start == "path" else "converged TS"
    print(f"\n{'model, from the reference ' + where:42s} {'ref intended':>12s} {'model intended':>14s} "
          f"{'median RMSD Å':>13s} {'s':>6s}  outcomes")
    for bench, pot in zip(a.bench, a.potential):
        t0 = time.perf_counter()
        res = from_reference(a.reactions, a.reference_bench, load_potential(pot, dtype=a.dtype, threads=1), start)
        everything[f"{bench}:from_reference_{start}"] = res
        _save(a.json, everything)
        counts = Counter(v["outcome"] for v in res.values())
        rmsds = [v["rmsd_to_reference_ts"] for v in res.values() if v["rmsd_to_reference_ts"] is not None]
        med = f"{statistics.median(rmsds):.3f}" if rmsds else "-"
        print(f"{pot[-42:]:42s} {len(res):12d} {counts['intended']:14d} {med:>13s} "
              f"{time.perf_counter() - t0:6.0f}  " + ", ".join(f"{k} {n}" for k, n in counts.most_common()), flush=True)


def _save(path: Path | None, everything: dict) -> None:
    """Every verdict so far (rewritten after each benchmark folder, so a stopped run keeps them)."""
    if path is not None:
        path.write_text(json.dumps(everything, indent=1))


if __name__ == "__main__":
    main()
