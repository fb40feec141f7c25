"""``OUT/report.md`` and ``OUT/learning_curve.png``: intended TSs against labels spent.

The curve has one point per finished round (round 0: the starting committee) at
(labels added so far, intended TSs on the held-out reactions); with ``compare`` (another
learn run folder, e.g. the ``--strategy random`` baseline) both runs are drawn on the same
axes and tabulated side by side. A second panel draws the committee's mean Hessian MAE on
the held-out labelled split, when it was given.
"""

from __future__ import annotations

import json
from pathlib import Path

CURVE = "learning_curve.png"


def read_records(run_dir) -> list[dict]:
    """The finished rounds' records of a learn run folder, by round."""
    recs = []
    for p in sorted(Path(run_dir).glob("round_*/record.json")):
        try:
            recs.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(recs, key=lambda r: r.get("round", 0))


def intended_count(rec: dict):
    """Held-out intended TSs: the mean over the evaluated committee models (the first one's when one)."""
    ts = rec.get("metrics", {}).get("ts") or {}
    return ts.get("intended_mean", ts.get("intended"))


def _hmae(rec: dict):
    return ((rec.get("metrics", {}).get("labelled") or {}).get("mean") or {}).get("hessian_mae")


def _label(run_dir: Path, recs: list[dict]) -> str:
    strategy = recs[0].get("strategy", "?") if recs else "?"
    return f"{strategy} ({run_dir.name})"


def plot_curves(runs: dict[str, list[dict]], path: Path) -> Path:
    """Intended TSs (and Hessian MAE, when known) against labels, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, recs in runs.items():
        pts = [(r["labels"], intended_count(r)) for r in recs if intended_count(r) is not None]
        if pts:
            axes[0].plot(*zip(*pts), marker="o", label=name)
        ref = [(r.get("metrics", {}).get("ts") or {}).get("intended_reference") for r in recs]
        if any(x is not None for x in ref):
            axes[0].axhline(max(x for x in ref if x is not None), color="grey", ls="--", lw=1)
        pts = [(r["labels"], _hmae(r)) for r in recs if _hmae(r) is not None]
        if pts:
            axes[1].plot(*zip(*pts), marker="o", label=name)
    axes[0].set(xlabel="labels added", ylabel="intended TSs (held-out reactions)",
                title="dashed: the engine's own TS search")
    axes[1].set(xlabel="labels added", ylabel="Hessian MAE (eV/Å²), held-out split")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.title.set_fontsize(9)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _fmt(v, f: str) -> str:
    return "-" if v is None else format(v, f)


def _table(name: str, recs: list[dict]) -> list[str]:
    lines = [f"### {name}", "", "| round | labels | intended | engine intended | both | TS found | "
             "Hessian MAE (eV/Å²) | pool | seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        ts = r.get("metrics", {}).get("ts") or {}
        n = intended_count(r)
        lines.append(f"| {r['round']} | {r['labels']} | {_fmt(n, 'd' if isinstance(n, int) else '.1f')} | "
                     f"{_fmt(ts.get('intended_reference'), 'd')} | {_fmt(ts.get('intended_both'), 'd')} | "
                     f"{_fmt(ts.get('ts_found'), 'd')} | {_fmt(_hmae(r), '.4f')} | {r.get('pool_size', 0)} | "
                     f"{r.get('seconds', 0):.0f} |")
    return lines + [""]


def last_common_round(runs: dict[str, list[dict]]) -> int | None:
    """The last round that every run finished with an intended count (None if there is none)."""
    rounds = [{r["round"] for r in recs if intended_count(r) is not None} for recs in runs.values()]
    common = set.intersection(*rounds) if rounds else set()
    return max(common) if common else None


def comparison_line(runs: dict[str, list[dict]]) -> str | None:
    """One sentence comparing two runs' intended TSs at the last round both finished
    (same labels spent), with the ratio of the first to the second; None without two runs."""
    if len(runs) != 2 or (r := last_common_round(runs)) is None:
        return None
    (na, ra), (nb, rb) = runs.items()
    a, b = ({x["round"]: x for x in recs} for recs in (ra, rb))
    x, y = intended_count(a[r]), intended_count(b[r])
    ratio = f"{x / y:.2f}×" if y else ("equal, none found" if not x else "∞ (the second run found none)")
    return (f"At round {r} ({a[r]['labels']} and {b[r]['labels']} labels): {na} {_fmt(x, 'g')} intended, "
            f"{nb} {_fmt(y, 'g')}; ratio {ratio}.")


def intended_reactions(run_dir, r: int) -> set[str] | None:
    """Names of the held-out reactions whose TS search (first model) was intended in round ``r``
    (the latest record per reaction, :func:`horm.ts.benchmark.read_results`); None when that
    round's search results are not there."""
    from horm.ts.benchmark import RESULTS, read_results

    d = Path(run_dir) / f"round_{r:02d}" / "heldout_ts"
    if not (d / RESULTS).is_file():
        return None
    return {str(rec.get("rxn")) for rec in read_results(d) if rec.get("intended") is True}


def paired_line(dirs: dict[str, Path], r: int) -> str | None:
    """Reaction by reaction at round ``r`` for two runs: solved by both, by one only, and how
    many reactions each run's own intended set changed by from round r − 1 (a noise yardstick)."""
    (na, da), (nb, db) = dirs.items()
    a, b = intended_reactions(da, r), intended_reactions(db, r)
    if a is None or b is None:
        return None
    parts = [f"Reaction by reaction at round {r}: both {len(a & b)}; only {na} {len(a - b)} "
             f"({', '.join(sorted(a - b)) or '-'}); only {nb} {len(b - a)} ({', '.join(sorted(b - a)) or '-'})."]
    flips = [f"{name} {len(now ^ before)}" for name, d, now in ((na, da, a), (nb, db, b))
             if (before := intended_reactions(d, r - 1)) is not None]
    if flips:
        parts.append(f"Reactions that changed outcome since round {r - 1}: {', '.join(flips)}.")
    return " ".join(parts)


def write_report(out, compare=None) -> Path:
    """Write ``report.md`` and the curve PNG in ``out``; returns the report's path."""
    out = Path(out)
    runs = {_label(out, recs := read_records(out)): recs}
    if compare is not None:
        other = read_records(compare)
        runs[_label(Path(compare), other)] = other
    png = plot_curves(runs, out / CURVE)
    lines = ["# horm learn", "", f"![intended TSs against labels]({png.name})", ""]
    if (line := comparison_line(runs)) is not None:
        lines += [line, ""]
        last = last_common_round(runs)
        if compare is not None and (pair := paired_line(dict(zip(runs, (out, Path(compare)))), last)) is not None:
            lines += [pair, ""]
    for name, recs in runs.items():
        lines += _table(name, recs)
    lines += ["Rounds: labels = geometries added to the learner's store so far; intended = held-out reactions whose "
              "TS search ended in the intended reactant and product (first committee model; the mean over the "
              "evaluated models with --eval-models > 1); engine intended = the "
              "same for the labelling engine's own TS search; both = solved by both.", ""]
    path = out / "report.md"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)
    return path
