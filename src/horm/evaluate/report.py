"""Tables (Markdown + CSV) shaped like HORM's Tables 1, 2 and A.1, parity plots and a radar plot.

Tables put models side by side: one row per metric (with its unit and statistic), one column
per model.

- ``table1``: accuracy — energy, force, Hessian and eigenvalue MAE, lowest-eigenvalue MAE,
  |cos| of the lowest normal mode.
- ``table2``: vibrational analysis — frequency MAE, lowest-frequency MAE, agreement on the
  number of negative eigenvalues (imaginary modes) and the model's number of them, on
  mass-weighted Eckart-projected Hessians.
- ``tableA1``: asymmetry — mean |Ĥ − Ĥᵀ| (Eq. A.1) and the relative ‖Ĥ − Ĥᵀ‖_F/‖Ĥ‖_F.

Plots (matplotlib, Agg): ``parity_<model>.png`` (energies referenced to the model's
per-element energies, force components, Hessian entries, Cartesian eigenvalues) and
``radar.png`` (Fig. 3 style: each axis a metric, scaled so the best model sits at the rim;
relative asymmetries below 1e-3 count as symmetric).
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np

from horm.evaluate.metrics import HIGHER_IS_BETTER, UNITS, Predictions

TABLES: dict[str, tuple[str, list[str]]] = {
    "table1": ("Table 1 — accuracy", ["energy_mae", "forces_mae", "hessian_mae", "eigval_mae", "lambda1_mae",
                                      "cos_mode1"]),
    "table2": ("Table 2 — vibrational analysis (mass-weighted, Eckart-projected)",
               ["freq_mae", "freq1_mae", "n_neg_agree", "n_neg_pred"]),
    "tableA1": ("Table A.1 — Hessian asymmetry", ["asym_mae", "asym_rel"]),
}
LABELS = {
    "energy_mae": "Energy MAE", "forces_mae": "Force MAE", "hessian_mae": "Hessian MAE",
    "eigval_mae": "Eigenvalue MAE", "lambda1_mae": "λ₁ MAE", "cos_mode1": "|cos| lowest mode",
    "freq_mae": "Frequency MAE", "freq1_mae": "Lowest-frequency MAE", "n_neg_agree": "# negative eigenvalues agree",
    "n_neg_pred": "# imaginary modes, model",
    "asym_mae": "Asymmetry mean |H−Hᵀ|", "asym_rel": "Relative asymmetry ‖H−Hᵀ‖/‖H‖",
}
RADAR = ["energy_mae", "forces_mae", "hessian_mae", "eigval_mae", "freq_mae", "asym_rel", "cos_mode1"]
# radar scores treat values below these as equal (round-off): autograd Hessians have a relative
# asymmetry of ~1e-7 that is noise, not a ranking
RADAR_FLOOR = {"asym_rel": 1e-3, "asym_mae": 1e-4}


def _fmt(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    if x == 0:
        return "0"
    a = abs(x)
    return f"{x:.3g}" if 1e-3 <= a < 1e4 else f"{x:.2e}"


def _full(x) -> str:
    """A number at full precision for CSV (shortest repr that reads back exactly); '' if missing."""
    return repr(float(x)) if x is not None and math.isfinite(x) else ""


def table_rows(summaries: dict[str, dict], metrics: list[str], fmt=_fmt) -> list[list[str]]:
    """Rows [metric, unit, stat, model1, model2, ...] for the given metrics (values through ``fmt``)."""
    rows = []
    for m in metrics:
        for stat in ("mean", "median"):
            if m == "n_neg_agree" and stat == "median":
                continue  # a median of 0/1 says little
            rows.append([LABELS.get(m, m), UNITS[m], stat] + [fmt(s.get(m, {}).get(stat, float("nan")))
                                                              for s in summaries.values()])
    return rows


def write_tables(summaries: dict[str, dict], out_dir: str | Path, n_molecules: dict[str, int] | None = None,
                 notes: list[str] | None = None) -> list[Path]:
    """Write table1/table2/tableA1 as .md and .csv (``notes``: lines on skipped samples, under each
    Markdown table); returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    header = ["metric", "unit", "stat"] + list(summaries)
    paths = []
    md_all = []
    for key, (title, metrics) in TABLES.items():
        rows = table_rows(summaries, metrics)
        with open(out / f"{key}.csv", "w", newline="") as fh:  # full precision; the Markdown is rounded
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(table_rows(summaries, metrics, fmt=_full))
        md = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
        if n_molecules:
            md += ["", "molecules: " + ", ".join(f"{k}: {v}" for k, v in n_molecules.items())]
        md += [f"\n**note:** {line}" for line in notes or ()]
        text = "\n".join(md) + "\n"
        (out / f"{key}.md").write_text(text)
        md_all.append(text)
        paths += [out / f"{key}.csv", out / f"{key}.md"]
    (out / "report.md").write_text("\n".join(md_all))
    paths.append(out / "report.md")
    return paths


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def parity_plot(name: str, pr: Predictions, path: str | Path, max_points: int = 200_000, seed: int = 0) -> Path:
    """Four parity panels for one model: referenced energy, forces, Hessian entries, eigenvalues."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    panels = []
    e, er, off = np.array(pr.energy), np.array(pr.energy_ref), np.array(pr.ref_offset)
    if np.isfinite(er).any():
        panels.append(("Energy − Σ ref (eV)", er - off, e - off))
    if pr.forces_ref and all(f is not None for f in pr.forces_ref):
        panels.append(("Force component (eV/Å)", np.concatenate([f.ravel() for f in pr.forces_ref]),
                       np.concatenate([f.ravel() for f in pr.forces])))
    if pr.hessian:
        panels.append(("Hessian entry (eV/Å²)", np.concatenate([h.ravel() for h in pr.hessian_ref]),
                       np.concatenate([h.ravel() for h in pr.hessian])))
        panels.append(("Cartesian eigenvalue (eV/Å²)", np.concatenate(pr.eig_ref), np.concatenate(pr.eig)))
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 4.0), squeeze=False)
    for ax, (label, x, y) in zip(axes[0], panels):
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        if x.size > max_points:
            sel = rng.choice(x.size, max_points, replace=False)
            x, y = x[sel], y[sel]
        ax.scatter(x, y, s=2, alpha=0.3, rasterized=True)
        lo, hi = (float(min(x.min(), y.min())), float(max(x.max(), y.max()))) if x.size else (0.0, 1.0)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"predicted {label}")
        mae = float(np.abs(x - y).mean()) if x.size else float("nan")
        ax.set_title(f"MAE {_fmt(mae)}", fontsize=9)
    fig.suptitle(name)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def radar_plot(summaries: dict[str, dict], path: str | Path, metrics: list[str] | None = None) -> Path:
    """Fig. 3-style radar: per axis the best model scores 1 (rim); others best/value (or value/best)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in (metrics or RADAR)
               if any(math.isfinite(s.get(m, {}).get("mean", float("nan"))) for s in summaries.values())]
    if len(metrics) < 3:
        metrics = metrics + ["energy_mae"] * (3 - len(metrics))
    angles = np.linspace(0, 2 * np.pi, len(metrics), endpoint=False).tolist()
    fig = plt.figure(figsize=(6, 6))
    ax = fig.add_subplot(111, polar=True)
    for name, s in summaries.items():
        vals = []
        for m in metrics:
            col = [t.get(m, {}).get("mean", float("nan")) for t in summaries.values()]
            col = [c for c in col if math.isfinite(c)]
            v = s.get(m, {}).get("mean", float("nan"))
            if not math.isfinite(v) or not col:
                vals.append(0.0)
            elif m in HIGHER_IS_BETTER:
                best = max(col)
                vals.append(v / best if best > 0 else 0.0)
            else:
                floor = RADAR_FLOOR.get(m, 0.0)
                best = max(min(col), floor)
                v = max(v, floor)
                vals.append(best / v if v > 0 else 1.0)
        ax.plot(angles + angles[:1], vals + vals[:1], lw=1.5, label=name)
        ax.fill(angles + angles[:1], vals + vals[:1], alpha=0.12)
    ax.set_xticks(angles)
    ax.set_xticklabels([f"{LABELS.get(m, m)}\n({UNITS[m]})" for m in metrics], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title("relative score (1 = best model on that axis)", fontsize=9)
    ax.legend(loc="upper right", bbox_to_anchor=(1.3, 1.1), fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(results: dict[str, tuple[dict, dict, Predictions]], out_dir: str | Path,
                 notes: list[str] | None = None) -> list[Path]:
    """results: model name -> (per-molecule metrics, summary, predictions). Writes tables and plots;
    ``notes`` (samples skipped, outliers kept, values left out of the means) go under each table."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries = {k: v[1] for k, v in results.items()}
    nmol = {k: len(v[2].energy) for k, v in results.items()}
    paths = write_tables(summaries, out, nmol, notes)
    for name, (metrics, _, pr) in results.items():
        paths.append(parity_plot(name, pr, out / f"parity_{_safe(name)}.png"))
        with open(out / f"per_molecule_{_safe(name)}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            keys = list(metrics)
            w.writerow(["key"] + [f"{k} [{UNITS[k]}]" for k in keys])
            for i in range(len(next(iter(metrics.values())))):
                sample = pr.keys[i] if i < len(pr.keys) else f"#{i}"
                w.writerow([sample] + [_full(metrics[k][i]) for k in keys])
        paths.append(out / f"per_molecule_{_safe(name)}.csv")
    paths.append(radar_plot(summaries, out / "radar.png"))
    return paths
