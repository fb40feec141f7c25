"""Render the demo's ``report.md`` from a :class:`~horm.demo.results.DemoResults` alone: summary
paragraph, tables, linked PNGs, configs, versions."""

from __future__ import annotations

import json
import math
import re

from horm.demo.results import DemoResults


def _f(x, nd=3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{nd}g}" if isinstance(x, float) else str(x)


def _get(summ: dict, model: str, metric: str, stat: str = "mean"):
    return summ.get(model, {}).get(metric, {}).get(stat, float("nan"))


def _change(a: float, b: float) -> str:
    if not (math.isfinite(a) and math.isfinite(b)) or a == 0:
        return "n/a"
    return f"{100 * (b - a) / abs(a):+.0f}%"


def summary_paragraph(demo: DemoResults) -> str:
    """What the numbers say, written from the numbers (no fixed claims)."""
    ev = demo.eval.get("val", {})
    parts = []
    for backbone in ("leftnet", "leftnet-df"):
        ef, efh = f"{backbone} E-F", f"{backbone} E-F-H"
        if ef in ev and efh in ev:
            h0, h1 = _get(ev, ef, "hessian_mae"), _get(ev, efh, "hessian_mae")
            a0, a1 = _get(ev, ef, "asym_rel"), _get(ev, efh, "asym_rel")
            f0, f1 = _get(ev, ef, "forces_mae"), _get(ev, efh, "forces_mae")
            s = (f"For `{backbone}`, E-F-H training changed the in-distribution Hessian MAE from {_f(h0)} to "
                 f"{_f(h1)} eV/Å² ({_change(h0, h1)}) and the force MAE from {_f(f0)} to {_f(f1)} eV/Å "
                 f"({_change(f0, f1)})")
            if backbone == "leftnet-df":
                s += (f"; the relative Hessian asymmetry ‖H−Hᵀ‖/‖H‖ went from {_f(a0)} to {_f(a1)} ({_change(a0, a1)}; "
                      "the absolute mean |H−Hᵀ| is in Table A.1)")
            parts.append(s + ".")
    hh = [k for k in ev if "hessian_head" in k]
    if hh:
        best = min(ev, key=lambda k: _get(ev, k, "hessian_mae") if math.isfinite(_get(ev, k, "hessian_mae")) else 1e9)
        parts.append(f"The direct Hessian head reached {_f(_get(ev, hh[0], 'hessian_mae'))} eV/Å²; the most accurate "
                     f"Hessian in-distribution came from `{best}`.")
    ts = demo.ts_summary
    if ts:
        ref = ts.get("xtb (reference)")
        line = ", ".join(f"{k}: {v['intended']['count']}/{v['n']}" for k, v in ts.items())
        parts.append(f"TS search, intended outcomes per potential — {line}.")
        refined = [k for k in ts if "refined" in k]
        if ref is not None and ref.get("reference_calls") and refined:
            base = ref["reference_calls"]["energy_forces"]
            parts.append("Refined on xTB from the shipped models' proposals (the model proposes, xTB confirms): "
                         + ", ".join(f"{k}: {ts[k]['intended']['count']}/{ts[k]['n']} intended with "
                                     f"{ts[k]['reference_calls']['energy_forces']} xTB energy+force calls, "
                                     f"{100 * ts[k]['reference_calls']['energy_forces'] / max(base, 1):.0f}% of "
                                     f"xTB alone's {base}" for k in refined) + ".")
        if ref is not None and ref["n"]:
            parts.append("The xTB reference defines what is reachable on these reactions; the small models, trained "
                         f"for {demo.settings.steps} steps on {demo.counts['train']} xTB samples, are far from converged, "
                         "so their TS counts show the workflow end to end rather than the paper's effect size.")
    if demo.settings.quick:
        parts.append("This was a `--quick` run (a smoke test of the whole pipeline); numbers from it are not meaningful.")
    return " ".join(parts)


def _ts_table(demo: DemoResults) -> str:
    rows = ["| potential | path | TS | IRC | intended | reference calls (E+F / Hessians) "
            "| both intended: TS RMSD (Å) / barrier MAE (kcal/mol) / n "
            "| both found a TS: TS RMSD (Å) / barrier MAE (kcal/mol) / n |",
            "|---|---|---|---|---|---|---|---|"]
    for label, s in demo.ts_summary.items():
        n = s["n"]
        c = demo.ts_compare.get(label, {})
        cost = s.get("reference_calls")
        calls = "-" if cost is None else f"{cost['energy_forces']} / {cost['hessian']}"
        rows.append(f"| {label} | {s['path']['count']}/{n} | {s['TS']['count']}/{n} | {s['IRC']['count']}/{n} | "
                    f"{s['intended']['count']}/{n} | {calls} | "
                    + (f"{_f(c.get('ts_rmsd_mean'))} / {_f(c.get('barrier_mae_kcal_mol'))} / "
                       f"{c.get('n_both_solved')} | {_f(c.get('ts_rmsd_mean_ts_found'))} / "
                       f"{_f(c.get('barrier_mae_kcal_mol_ts_found'))} / {c.get('n_both_ts_found')} |"
                       if c else "reference | reference |"))
    return "\n".join(rows)


def _tables(demo: DemoResults, split: str) -> str:
    out = []
    for key in ("table1", "table2", "tableA1"):
        p = demo.out / f"eval_{split}" / f"{key}.md"
        if p.exists():
            out.append(re.sub(r"^### ", "#### ", p.read_text(), flags=re.M))
    return "\n".join(out)


def render_report(demo: DemoResults) -> str:
    s = demo.settings
    lines = [
        "# horm demo report",
        "",
        f"Bundled data: GFN2-xTB labels (not DFT) on Transition1x reactions — train {demo.counts['train']}, "
        f"val {demo.counts['val']}, ood {demo.counts['ood']} samples; {demo.n_test_reactions} held-out test "
        f"reactions for TS search. Models: {', '.join(f'`{v.label}`' for v in demo.variants)}, "
        f"{s.steps} steps each, batch {s.batch_size}, lr {s.lr}, seed {s.seed}.",
        "",
        "## Summary",
        "",
        summary_paragraph(demo),
        "",
        "## Data (Fig. 1)",
        "",
        " ".join(f"![{f}]({f})" for f in demo.fig1),
        "",
        "| split | atoms | mean # imaginary modes |",
        "|---|---|---|",
        *[f"| {sp} | {v['natoms']} | {_f(v['n_imag_mean'])} |" for sp, v in demo.fig1_stats.items()],
        "",
        "## In-distribution (val)",
        "",
        _tables(demo, "val"),
        "![radar](eval_val/radar.png)",
        "",
        "Parity plots: " + ", ".join(f"[{k}](eval_val/parity_{re.sub(r'[^A-Za-z0-9_.-]+', '_', k)}.png)"
                                     for k in demo.model_labels),
        "",
        "## Out-of-distribution (ood)",
        "",
        _tables(demo, "ood"),
        "![radar](eval_ood/radar.png)",
        "",
        "## TS search (Fig. 2)",
        "",
        _ts_table(demo),
        "",
        f"![Fig. 2]({demo.fig2})",
        "",
        *([f"Shipped models not run (the demo's {demo.settings.deadline_s:.0f} s deadline): "
           f"{', '.join(demo.shipped_left_out)}.", ""] if demo.shipped_left_out else []),
        "Per-reaction records (JSON lines), paths, TSs and IRCs as xyz: `ts/<potential>/`.",
        "",
        "## Wall times (vary between runs)",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.1f} |" for k, v in demo.timings.items()],
        "",
        "## Exact configuration",
        "",
        "Demo settings:",
        "",
        "```json",
        json.dumps({k: v for k, v in vars(s).items()}, indent=1),
        "```",
        "",
        "Training configs (also saved as `runs/<model>/config.yaml`):",
        "",
        "```json",
        json.dumps(demo.train_configs, indent=1, default=str),
        "```",
        "",
        "Versions:",
        "",
        "```json",
        json.dumps(demo.versions, indent=1),
        "```",
        "",
    ]
    return "\n".join(lines)
