"""Summaries of a TS benchmark: counts per stage (Fig. 2), a bar chart, and run-vs-run comparison.

``summarize(records)`` counts path success, TS success, IRC success (``irc_success``: both
branches converged; see :mod:`horm.ts.workflow`) and intended outcomes
(each as a count and a fraction of all reactions), timeouts and errors, and the median
wall time per reaction (s; timeouts enter with the time they were given).
``compare_runs(run, reference)`` takes the reactions that both runs solved (outcome
intended) and reports the aligned TS RMSD (Å) and the barrier MAE (kcal/mol).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from horm.ts.benchmark import read_results
from horm.ts.verify import OUTCOMES, aligned_rmsd

STAGES = (("path_success", "path"), ("ts_success", "TS"), ("irc_success", "IRC"), ("intended", "intended"))


def summarize(records: list[dict]) -> dict:
    """Counts and rates per stage, outcomes, timeouts/errors and median seconds per reaction."""
    n = len(records)
    out: dict = {"n": n}
    for key, label in STAGES:
        c = sum(bool(r.get(key)) for r in records)
        out[label] = {"count": c, "rate": c / n if n else float("nan")}
    out["outcomes"] = dict(Counter(r.get("outcome") for r in records if r.get("outcome")))
    for o in OUTCOMES:
        out["outcomes"].setdefault(o, 0)
    status = Counter(r.get("status", "done") for r in records)
    out["timeouts"] = status.get("timeout", 0)
    out["errors"] = status.get("error", 0)
    secs = [float(r["seconds"]) for r in records if r.get("seconds") is not None]
    out["median_seconds"] = float(np.median(secs)) if secs else float("nan")
    barriers = [r["barrier_kcal_mol"] for r in records if r.get("intended") and r.get("barrier_kcal_mol") is not None]
    out["median_barrier_kcal_mol"] = float(np.median(barriers)) if barriers else float("nan")
    return out


def _ts_positions(run_dir: Path, rxn: str):
    from horm.data.xyz import read_xyz

    p = run_dir / rxn / "ts.xyz"
    if not p.exists():
        return None
    return read_xyz(p, validate=False)[0].pos


def _rmsd_and_barrier(run_dir: Path, reference_dir: Path, a: dict, b: dict, keys: list[str]):
    rmsd, dbar = {}, {}
    for k in keys:
        pa, pb = _ts_positions(run_dir, k), _ts_positions(reference_dir, k)
        if pa is not None and pb is not None and pa.shape == pb.shape:
            rmsd[k] = aligned_rmsd(pb, pa)
        ba, bb = a[k].get("barrier_kcal_mol"), b[k].get("barrier_kcal_mol")
        if ba is not None and bb is not None:
            dbar[k] = abs(float(ba) - float(bb))
    return rmsd, dbar


def _stats(d: dict) -> tuple[float | None, float | None]:
    v = np.array(list(d.values()))
    return (float(v.mean()), float(np.median(v))) if v.size else (None, None)


def compare_runs(run_dir, reference_dir) -> dict:
    """TS RMSD (Å, after alignment) and barrier MAE (kcal/mol) against a reference run.

    Two sets of reactions: those both runs *solved* (outcome intended: the paper's
    comparison), and the wider set where both runs *found a TS* (exactly one imaginary
    mode), so an under-trained model that finds saddles but not intended ones still gets
    an RMSD. Barriers enter only where both records have one.
    """
    run_dir, reference_dir = Path(run_dir), Path(reference_dir)
    a = {r["rxn"]: r for r in read_results(run_dir)}
    b = {r["rxn"]: r for r in read_results(reference_dir)}
    both = a.keys() & b.keys()
    solved = sorted(k for k in both if a[k].get("intended") and b[k].get("intended"))
    found = sorted(k for k in both if a[k].get("ts_success") and b[k].get("ts_success"))
    rmsd, dbar = _rmsd_and_barrier(run_dir, reference_dir, a, b, solved)
    rmsd_ts, dbar_ts = _rmsd_and_barrier(run_dir, reference_dir, a, b, found)
    r_mean, r_med = _stats(rmsd)
    rt_mean, rt_med = _stats(rmsd_ts)
    return {"n_run": len(a), "n_reference": len(b), "n_both_solved": len(solved),
            "ts_rmsd_mean": r_mean, "ts_rmsd_median": r_med,
            "barrier_mae_kcal_mol": _stats(dbar)[0],
            "n_both_ts_found": len(found), "ts_rmsd_mean_ts_found": rt_mean, "ts_rmsd_median_ts_found": rt_med,
            "barrier_mae_kcal_mol_ts_found": _stats(dbar_ts)[0], "n_barriers_ts_found": len(dbar_ts),
            "per_reaction": {k: {"ts_rmsd": rmsd_ts.get(k), "barrier_abs_err": dbar_ts.get(k),
                                 "both_intended": k in solved} for k in found}}


def summary_table(summary: dict, title: str = "TS benchmark"):
    """A rich Table of the stage counts."""
    from rich.table import Table

    t = Table(title=title)
    t.add_column("stage")
    t.add_column("count", justify="right")
    t.add_column("rate", justify="right")
    n = summary["n"]
    for _, label in STAGES:
        c = summary[label]
        t.add_row(label, f"{c['count']}/{n}", f"{100 * c['rate']:.1f}%" if n else "-")
    for o in OUTCOMES[1:]:
        t.add_row(f"  {o}", str(summary["outcomes"].get(o, 0)), "")
    t.add_row("timeouts", str(summary["timeouts"]), "")
    t.add_row("errors", str(summary["errors"]), "")
    t.add_row("median s/reaction", f"{summary['median_seconds']:.1f}", "")
    return t


def bar_chart(summaries: dict[str, dict], path) -> Path:
    """Fig. 2-style grouped bars: per run, the % of reactions passing each stage. PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label for _, label in STAGES]
    x = np.arange(len(labels))
    width = 0.8 / max(len(summaries), 1)
    fig, ax = plt.subplots(figsize=(6, 4.0))
    for k, (name, s) in enumerate(summaries.items()):
        vals = [100 * s[label]["rate"] if s["n"] else 0 for label in labels]
        bars = ax.bar(x + (k - (len(summaries) - 1) / 2) * width, vals, width, label=f"{name} (n={s['n']})")
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_xticks(x, ["path converged", "TS found", "IRC done", "intended"])
    ax.set_ylabel("reactions (%)")
    ax.set_ylim(0, 110)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
