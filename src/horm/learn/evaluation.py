"""How good the committee is after a round, on data that is never labelled by the loop.

- **TS search on held-out reactions**: the committee's first ``eval_models`` models run the
  TS workflow on every held-out reaction (``round_rr/heldout_ts/`` for the first,
  ``heldout_ts_m<i>/`` for model i; :func:`horm.ts.benchmark.run_benchmark`), and the engine
  runs its own TS search on them once (``OUT/reference_ts/``, shared by all rounds).
  Reported: intended TSs of the first model and of the engine, reactions both solved, TS
  found, and the aligned TS RMSD / barrier error where both solved
  (:func:`horm.ts.report.compare_runs`, as ``horm ts benchmark --reference``); with more
  than one model also ``members`` (each model's counts) and ``intended_mean``.
- **Hessian MAE on a held-out labelled split** (:func:`horm.evaluate.run.evaluate_models`):
  energy, force, Hessian and eigenvalue MAE (means over molecules) of every committee model,
  on at most ``eval_max_samples`` samples spread evenly over the file (a split ordered by
  reaction is covered end to end).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

_MAE = ("energy_mae", "forces_mae", "hessian_mae", "eigval_mae")


def ts_metrics(files: Sequence[Path], model: str, engine: str, run_dir: Path, reference_dir: Path, settings,
               jobs: dict) -> dict:
    """TS-search counts of ``model`` on ``files`` against ``engine``'s own search (see the module docstring)."""
    from horm.ts.benchmark import run_benchmark
    from horm.ts.report import compare_runs

    ref = run_benchmark(list(files), engine, reference_dir, settings=settings, **jobs)
    recs = run_benchmark(list(files), str(Path(model).resolve()), run_dir, settings=settings, **jobs)
    cmp = compare_runs(run_dir, reference_dir)
    return {"n_reactions": len(recs), "intended": sum(bool(r.get("intended")) for r in recs),
            "ts_found": sum(bool(r.get("ts_success")) for r in recs),
            "intended_reference": sum(bool(r.get("intended")) for r in ref),
            "intended_both": cmp["n_both_solved"], "ts_rmsd_mean": cmp["ts_rmsd_mean"],
            "barrier_mae_kcal_mol": cmp["barrier_mae_kcal_mol"]}


def hessian_metrics(models: Sequence[str], store: str, max_samples: int | None) -> dict:
    """Per model (``m<i>``) the mean energy/force/Hessian/eigenvalue MAE on ``store``, and their committee mean."""
    from horm.evaluate.run import evaluate_models

    named = {f"m{i}": str(m) for i, m in enumerate(models)}
    res = evaluate_models(named, store, max_samples=max_samples, spread=True, dtype="float64")
    per = {name: {k: summary[k]["mean"] for k in _MAE if k in summary} for name, (_, summary, _) in res.items()}
    mean = {k: sum(p[k] for p in per.values()) / len(per) for k in _MAE if all(k in p for p in per.values())}
    return {"models": per, "mean": mean}


def evaluate_round(models: Sequence[str], settings, round_dir: Path, out: Path, ts_settings, jobs: dict) -> dict:
    """The round's metrics: ``{"ts": ..., "labelled": ...}`` (a part is absent when its held-out set is not given)."""
    from horm.ts.benchmark import select_reactions

    metrics: dict = {}
    if settings.heldout_reactions is not None:
        files = select_reactions(settings.heldout_reactions)
        k = min(settings.eval_models, len(models))
        members = [ts_metrics(files, models[i], settings.engine,
                              Path(round_dir) / ("heldout_ts" if i == 0 else f"heldout_ts_m{i}"),
                              Path(out) / "reference_ts", ts_settings, jobs) for i in range(k)]
        metrics["ts"] = dict(members[0])
        if k > 1:
            metrics["ts"]["members"] = members
            metrics["ts"]["intended_mean"] = sum(m["intended"] for m in members) / k
    if settings.heldout_store is not None:
        metrics["labelled"] = hessian_metrics(models, settings.heldout_store, settings.eval_max_samples)
    return metrics
