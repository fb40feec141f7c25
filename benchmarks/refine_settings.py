"""Which refinement settings confirm the most proposals for the fewest reference calls?

Re-runs only the reference's part of a refined TS search (``horm ts benchmark --refine REF
--proposals RUN``) from the same stored proposals under several settings, side by side in one
run: RUN is a benchmark of the proposer (model-only or refined), so every setting sees the
identical bands and TSs and the proposer is not searched again. Per setting it prints the
intended count, the reference energy+force calls and Hessians in total and as a share of a
reference-only benchmark (``--baseline``), the reactions lost and gained against it and, with
``--audit``, how often the cheap IRC verdict agrees with the full reference IRC from the same TS.
Each setting's folder is an ordinary resumable benchmark under ``OUT/<setting>/``.

    python benchmarks/refine_settings.py REACTIONS_DIR --proposer t1x-xtb-leftnet-efh \\
        --proposals RUN --baseline XTB_RUN --out OUT [--settings default ts-only ...] [--audit] [-j 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

SETTINGS = {  # name: RunSettings sections over the defaults (refine: RefineSettings fields)
    "default": {},
    "first": {"refine": {"band_steps": 15, "end_fmax": 0.05, "irc_dx": 0.1}},  # the settings measured first
    "ts-only": {"refine": {"strategy": "ts"}},
    "band-only": {"refine": {"strategy": "band"}},
    "band6": {"refine": {"band_steps": 6}},
    "band5": {"refine": {"band_steps": 5}},
    "band10": {"refine": {"band_steps": 10}},
    "trust0.1": {"refine": {"tsopt": {"trust_radius": 0.1}}},
    "trust0.025": {"refine": {"tsopt": {"trust_radius": 0.025}}},
    "ts30": {"refine": {"tsopt": {"max_steps": 30}}},
    "hessian-reference": {"refine": {"hessian": "reference"}},
    "hessian-model-every": {"refine": {"hessian": "model-every"}},
    "irc-proposer": {"refine": {"irc": "proposer"}},
    "irc-reference": {"refine": {"irc": "reference"}},
    "irc-dx0.25": {"refine": {"irc_dx": 0.25}},
    "elsewhere0": {"refine": {"settled_elsewhere": 0}},  # branches settle on R's or P's graph only
    "elsewhere3": {"refine": {"settled_elsewhere": 3}},
    "elsewhere8": {"refine": {"settled_elsewhere": 8}},
    "drop0.15": {"refine": {"settled_drop": 0.15}},
    "no-relax": {"refine": {"end_max_steps": 0}},
    "fallback": {"refine": {"fallback": True}},
    "fallback-not-intended": {"refine": {"fallback": True, "fallback_when": "not-intended"}},
}


def settings_of(name: str, audit: bool):
    from horm.ts.workflow import RunSettings

    over = {k: dict(v) for k, v in SETTINGS[name].items()}
    over.setdefault("refine", {})
    if audit:
        over["refine"]["audit_irc"] = True
    return RunSettings.from_dict(over)


def row(name: str, records: list[dict], baseline: list[dict]) -> str:
    from horm.ts.report import cost_ratio

    base_int = {r["rxn"] for r in baseline if r.get("intended")}
    got = {r["rxn"] for r in records if r.get("intended")}
    c = cost_ratio(records, baseline)
    agree = [r["audit"]["agrees"] for r in records if r.get("audit")]
    lost, gained = sorted(base_int & {r["rxn"] for r in records} - got), sorted(got - base_int)
    return (f"{name:20s} {len(got):4d}/{len(records):<3d} {c['energy_forces_run']:7d} "
            f"{100 * c['energy_forces_ratio']:6.1f} {c['hessian_run']:5d} {100 * c['hessian_ratio']:6.1f} "
            f"{(f'{sum(agree)}/{len(agree)}' if agree else '-'):>7s}  lost {len(lost)}: {' '.join(lost) or '-'}; "
            f"gained {len(gained)}: {' '.join(gained) or '-'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reactions", type=Path)
    ap.add_argument("--proposer", required=True, help="the potential of the proposals' run")
    ap.add_argument("--proposals", type=Path, required=True, help="a benchmark folder of the proposer")
    ap.add_argument("--reference", default="xtb")
    ap.add_argument("--baseline", type=Path, required=True, help="the reference-only benchmark folder")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--audit", action="store_true", help="also run the full reference IRC (counted apart)")
    ap.add_argument("-j", "--workers", type=int, default=1)
    ap.add_argument("--dtype", default="float64")
    a = ap.parse_args(argv)
    from horm.ts.benchmark import read_results, run_benchmark, select_reactions

    files = select_reactions(a.reactions)
    baseline = read_results(a.baseline)
    lines = []
    for name in a.settings:
        t0 = time.perf_counter()
        recs = run_benchmark(files, a.proposer, a.out / name, workers=a.workers, settings=settings_of(name, a.audit),
                             refine=a.reference, proposals=a.proposals, dtype=a.dtype)
        lines.append(row(name, recs, baseline))
        print(f"{lines[-1]}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    base_n = sum(bool(r.get("intended")) for r in baseline)
    print(f"\nbaseline {a.baseline}: {base_n}/{len(baseline)} intended")
    print(f"{'setting':20s} {'intended':>8s} {'E+F':>7s} {'%base':>6s} {'Hess':>5s} {'%base':>6s} {'agrees':>7s}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
