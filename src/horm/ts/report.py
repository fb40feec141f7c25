"""Summaries of a TS benchmark: counts per stage (Fig. 2), a bar chart, and run-vs-run comparison.

``summarise(records)`` counts path success, TS success, IRC success (``irc_success``: both
branches converged; see :mod:`horm.ts.workflow`) and intended outcomes
(each as a count and a fraction of all reactions), timeouts and errors, and the median
wall time per reaction (s; timeouts enter with the time they were given).
``compare_runs(run, reference)`` takes the reactions that both runs solved (outcome
intended) and reports the aligned TS RMSD (Å) and the barrier MAE (kcal/mol).
``summarise_runs(runs, reference=...)`` does both for several runs and draws the chart;
``benchmark_report(out_dir, reference_dir)`` is what ``horm ts benchmark``/``ts summary``
write (``ts_benchmark.png``, ``summary.json``).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Mapping

import numpy as np

from horm.errors import UsageError
from horm.ts.benchmark import read_results
from horm.ts.record import reference_calls_of
from horm.ts.verify import OUTCOMES, aligned_rmsd

STAGES = (("path_success", "path"), ("ts_success", "TS"), ("irc_success", "IRC"), ("intended", "intended"))


def summarise(records: list[dict]) -> dict:
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
    out["reference_calls"] = reference_cost(records)
    return out


def reference_cost(records: list[dict]) -> dict | None:
    """Reference energy+force calls and Hessians: totals, per reaction (median and mean) and
    per intended TS (total / intended); None when no record counts them."""
    calls = [(r, reference_calls_of(r)) for r in records]
    calls = [(r, c) for r, c in calls if c is not None]
    if not calls:
        return None
    ef = np.array([c.get("energy_forces", 0) for _, c in calls], dtype=float)
    hs = np.array([c.get("hessian", 0) for _, c in calls], dtype=float)
    secs = [c.get("seconds") for _, c in calls if c.get("seconds") is not None]
    n_int = sum(bool(r.get("intended")) for r, _ in calls)
    return {"n": len(calls), "energy_forces": int(ef.sum()), "hessian": int(hs.sum()),
            "seconds": round(float(sum(secs)), 3) if secs else None,
            "median_energy_forces": float(np.median(ef)), "mean_energy_forces": float(ef.mean()),
            "median_hessian": float(np.median(hs)),
            "energy_forces_per_intended": float(ef.sum() / n_int) if n_int else None,
            "hessian_per_intended": float(hs.sum() / n_int) if n_int else None}


def cost_ratio(records: list[dict], reference_records: list[dict]) -> dict | None:
    """Reference calls of a run over those of a reference run, on the reactions both hold."""
    ref = {r["rxn"]: reference_calls_of(r) for r in reference_records}
    pairs = [(reference_calls_of(r), ref.get(r["rxn"])) for r in records]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    if not pairs:
        return None
    tot = {k: (sum(a.get(k, 0) for a, _ in pairs), sum(b.get(k, 0) for _, b in pairs))
           for k in ("energy_forces", "hessian")}
    return {"n": len(pairs), **{f"{k}_run": v[0] for k, v in tot.items()},
            **{f"{k}_reference": v[1] for k, v in tot.items()},
            **{f"{k}_ratio": (v[0] / v[1] if v[1] else None) for k, v in tot.items()}}


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
    lost = sorted(k for k in both if b[k].get("intended") and not a[k].get("intended"))
    gained = sorted(k for k in both if a[k].get("intended") and not b[k].get("intended"))
    return {"n_run": len(a), "n_reference": len(b), "n_both_solved": len(solved),
            "cost": cost_ratio([a[k] for k in sorted(both)], [b[k] for k in sorted(both)]),
            "lost": lost, "gained": gained,
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
    cost = summary.get("reference_calls")
    if cost is not None:
        per = cost["energy_forces_per_intended"]
        t.add_row("reference calls", f"{cost['energy_forces']} + {cost['hessian']} H",
                  f"{cost['median_energy_forces']:.0f}/rxn")
        t.add_row("  per intended TS", "-" if per is None else f"{per:.0f}", "")
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


def summarise_runs(runs: Mapping[str, str | Path], reference: str | None = None, chart: str | Path | None = None,
                   records: Mapping[str, list[dict]] | None = None) -> dict:
    """Stage counts of every run, each compared with the ``reference`` run, and the chart.

    runs: ``{label: benchmark folder}``; reference: one of the labels (None: no
    comparison); chart: PNG path for :func:`bar_chart` (None: no chart); records: a
    run's records to use instead of all those in its folder. Returns ``{"summaries":
    {label: summary}, "compare": {label: compare_runs(...)}, "chart": Path | None}``.
    """
    if reference is not None and reference not in runs:
        raise UsageError(f"reference {reference!r} is not one of the runs ({', '.join(runs)})")
    records = records or {}
    summaries = {label: summarise(records[label] if label in records else read_results(d)) for label, d in runs.items()}
    compare = {label: compare_runs(d, runs[reference]) for label, d in runs.items()
               if reference is not None and label != reference}
    png = bar_chart(summaries, chart) if chart is not None else None
    return {"summaries": summaries, "compare": compare, "chart": png}


def _fmt(v, f: str) -> str:
    return "-" if v is None else format(v, f)


def comparison_lines(cmp: dict, against: str) -> list[str]:
    """TS RMSD and barrier MAE on the reactions both solved, and where both found a TS; the
    reference-call ratio and the reactions lost and gained."""
    lines = []
    c = cmp.get("cost")
    if c is not None and c["energy_forces_reference"]:
        lines.append(f"vs {against}: reference calls {c['energy_forces_run']} / {c['energy_forces_reference']} "
                     f"= {100 * c['energy_forces_ratio']:.1f}% energy+forces, {c['hessian_run']} / "
                     f"{c['hessian_reference']} Hessians on {c['n']} reactions")
    if cmp.get("lost") or cmp.get("gained"):
        lines.append(f"vs {against}: lost {', '.join(cmp['lost']) or '-'}; gained {', '.join(cmp['gained']) or '-'}")
    return lines + [f"vs {against}: {cmp['n_both_solved']} reactions solved by both; TS RMSD mean "
            f"{_fmt(cmp['ts_rmsd_mean'], '.3f')} Å (median {_fmt(cmp['ts_rmsd_median'], '.3f')} Å), "
            f"barrier MAE {_fmt(cmp['barrier_mae_kcal_mol'], '.2f')} kcal/mol",
            f"vs {against}: {cmp['n_both_ts_found']} reactions where both found a TS; TS RMSD mean "
            f"{_fmt(cmp['ts_rmsd_mean_ts_found'], '.3f')} Å (median {_fmt(cmp['ts_rmsd_median_ts_found'], '.3f')} Å), "
            f"barrier MAE {_fmt(cmp['barrier_mae_kcal_mol_ts_found'], '.2f')} kcal/mol "
            f"({cmp['n_barriers_ts_found']} with barriers)"]


def run_potential(run_dir: str | Path, default: str = "run") -> str:
    """The potential a benchmark folder was run with (its ``benchmark.json``)."""
    meta = Path(run_dir) / "benchmark.json"
    return json.loads(meta.read_text()).get("potential", default) if meta.exists() else default


def run_label(run_dir: str | Path, default: str = "run") -> str:
    """A run's name for tables and charts: the potential's, with ``→ REF`` when a reference refined."""
    meta = Path(run_dir) / "benchmark.json"
    refine = json.loads(meta.read_text()).get("refine") if meta.exists() else None
    name = Path(run_potential(run_dir, default)).name
    return name if refine is None else f"{name} → {Path(refine).name}"


def benchmark_report(out_dir: str | Path, reference_dir: str | Path | None = None, records: list[dict] | None = None,
                     name: str | None = None) -> dict:
    """Summary of the benchmark in ``out_dir`` (its ``records``, default all in the folder),
    compared with ``reference_dir`` when given; writes ``ts_benchmark.png`` and
    ``summary.json`` there. Returns ``{"summary", "reference"?, "name", "chart", "lines"}``."""
    from horm.safe_io import write_json_atomic

    out_dir = Path(out_dir)
    name = name or run_label(out_dir)
    runs: dict = {name: out_dir}
    ref_label = None
    if reference_dir is not None:
        reference_dir = Path(reference_dir)
        if not (reference_dir / "results.jsonl").exists():
            raise UsageError(f"{reference_dir}: no results.jsonl (not a benchmark folder)")
        ref_label = f"{run_label(reference_dir, 'reference')} (reference)"
        runs[ref_label] = reference_dir
    res = summarise_runs(runs, ref_label, out_dir / "ts_benchmark.png", {name: records} if records is not None else None)
    result: dict = {"summary": res["summaries"][name]}
    lines: list[str] = []
    if ref_label is not None:
        result["reference"] = {"dir": str(reference_dir), **res["compare"][name]}
        lines = comparison_lines(res["compare"][name], str(reference_dir))
    write_json_atomic(out_dir / "summary.json", result)
    return {**result, "name": name, "chart": res["chart"], "lines": lines}
