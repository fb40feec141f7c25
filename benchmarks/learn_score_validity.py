"""Does the committee's disagreement point at the geometries the committee gets wrong?

    python benchmarks/learn_score_validity.py [--run runs/learn_curve2] [--round 1] [--max 400]

``horm learn`` labels the geometries its committee disagrees on most. That helps only if
disagreement tracks the committee's actual error. After a committee run and a random run
of ``benchmarks/learn_curve.py``, round ``--round`` of both drew from the same visited pool
(same seed models, same pool reactions) and each labelled its picks with xTB. This script
takes those labels (only from training pool reactions: no held-out reaction is touched),
predicts them with the round's input models, and prints:

- the Spearman rank correlation of each score (``forces``, ``hessian``, ``eigen``;
  :mod:`horm.learn.scoring`) with each actual error of the committee (mean over members):
  force MAE, Hessian MAE, lowest-eigenvalue error, 1 − |cos| of the lowest mode, and the
  eigen-score analogue of the error (eigenvalue error + 1 − |cos|);
- computed on the random run's picks alone (an unbiased sample of the pool) and on all;
- the mean actual errors of the committee's picks against the random run's picks: what
  top-score selection bought; and how far from a stationary point the picks are, by the
  label (xTB) and by the committee: the median largest atomic force |F| of each.

A score worth selecting by has a clearly positive correlation on the random picks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

ERRORS = ("force_mae", "hessian_mae", "eigval_err", "eigvec_err", "eigen_err")


def labelled_picks(run: Path, strategy: str, rnd: int) -> list:
    """The labelled samples the ``strategy`` run picked in round ``rnd`` (keys ``rNN:...``)."""
    from horm.data.store import HessianStore

    prefix = f"r{rnd:02d}:"
    with HessianStore.open(run / strategy / "store.hstore") as store:
        return [s for s in store if s.key.startswith(prefix) and s.hessian is not None]


def round_models(run: Path, strategy: str, rnd: int) -> list[str]:
    """The models a round started from: the previous round's fine-tuned ones (seed models for round 1)."""
    state = json.loads((run / strategy / "state.json").read_text())
    if rnd == 1:
        return list(state["settings"]["models"])
    prev = run / strategy / f"round_{rnd - 1:02d}" / "finetune"
    return [str(p / "model.pt") for p in sorted(prev.iterdir()) if (p / "model.pt").exists()]


def committee_errors(forces, hessians, sample, k: int, vec_weight: float) -> dict[str, float]:
    """Actual errors of each member against the label, averaged over members."""
    from horm.learn.scoring import lowest_modes

    lam_t, vec_t = lowest_modes(sample.hessian, sample.pos, k)
    out = {e: [] for e in ERRORS}
    for f, h in zip(forces, hessians):
        lam, vec = lowest_modes(h, sample.pos, k)
        val = float(np.abs(lam - lam_t).mean())
        vec_err = float(np.mean(1.0 - np.clip(np.abs(np.einsum("ak,ak->k", vec, vec_t)), 0.0, 1.0)))
        out["force_mae"].append(float(np.abs(f - sample.forces).mean()))
        out["hessian_mae"].append(float(np.abs(h - sample.hessian).mean()))
        out["eigval_err"].append(val)
        out["eigvec_err"].append(vec_err)
        out["eigen_err"].append(val + vec_weight * vec_err)
    return {e: float(np.mean(v)) for e, v in out.items()}


def measure(models, samples, k: int, vec_weight: float) -> list[dict]:
    """Scores and actual errors of the committee on every sample."""
    from horm.learn.committee import committee_predictions
    from horm.learn.scoring import SCORE_KINDS, committee_score
    from horm.runtime import thread_limit

    rows = []
    with thread_limit(1):
        for i, s in enumerate(samples):
            (forces, hessians), = committee_predictions(models, s, "models")
            row = {"key": s.key, "stage": s.key.split(":")[3] if s.key.count(":") >= 3 else "?"}
            row.update({f"score_{kind}": committee_score(kind, forces, hessians, s.pos, k, vec_weight)
                        for kind in SCORE_KINDS})
            row.update(committee_errors(forces, hessians, s, k, vec_weight))
            row["label_fmax"] = float(np.linalg.norm(s.forces, axis=1).max())
            row["committee_fmax"] = float(np.linalg.norm(forces.mean(axis=0), axis=1).max())
            rows.append(row)
            if (i + 1) % 50 == 0:
                print(f"  {i + 1}/{len(samples)} geometries", flush=True)
    return rows


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def table(rows: list[dict], title: str) -> list[str]:
    from horm.learn.scoring import SCORE_KINDS

    lines = [f"Spearman correlation, score vs actual error — {title} (n = {len(rows)})", "",
             "| score | " + " | ".join(ERRORS) + " |", "|---|" + "---|" * len(ERRORS)]
    for kind in SCORE_KINDS:
        cells = [f"{spearman([r[f'score_{kind}'] for r in rows], [r[e] for r in rows]):+.2f}" for e in ERRORS]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return lines + [""]


def pick_means(by_strategy: dict[str, list[dict]]) -> list[str]:
    lines = ["Mean actual error of each run's picks (committee members' mean)", "",
             "| picks | n | " + " | ".join(ERRORS) + " | TS iterates | median largest atomic force, xTB (eV/Å) "
             "| same, committee |",
             "|---|---|" + "---|" * (len(ERRORS) + 3)]
    for name, rows in by_strategy.items():
        cells = [f"{np.mean([r[e] for r in rows]):.3f}" for e in ERRORS]
        ts = sum(r["stage"] == "ts_iterates" for r in rows)
        fmax = [f"{np.median([r[f] for r in rows]):.2f}" for f in ("label_fmax", "committee_fmax")]
        lines.append(f"| {name} | {len(rows)} | " + " | ".join(cells) + f" | {ts} | " + " | ".join(fmax) + " |")
    return lines + [""]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=REPO / "runs" / "learn_curve2")
    ap.add_argument("--round", type=int, default=1)
    ap.add_argument("--max", type=int, default=400, help="at most this many picks per strategy")
    ap.add_argument("--out", type=Path, default=None, help="JSON of every row (default RUN/score_validity_rNN.json)")
    a = ap.parse_args(argv)
    for strategy in ("committee", "random"):
        if not (a.run / strategy / "store.hstore").exists():
            raise SystemExit(f"{a.run / strategy}: no store.hstore; run benchmarks/learn_curve.py first")
    from horm.learn.committee import load_committee

    state = json.loads((a.run / "committee" / "state.json").read_text())["settings"]
    k, vw = int(state["eigen_k"]), float(state["eigvec_weight"])
    paths = round_models(a.run, "random", a.round)
    if paths != round_models(a.run, "committee", a.round):
        print("note: the two runs started this round from different models; scoring with the random run's")
    models = load_committee(paths)
    by = {}
    for strategy in ("random", "committee"):
        samples = labelled_picks(a.run, strategy, a.round)[: a.max]
        print(f"{strategy}: {len(samples)} labelled picks of round {a.round}", flush=True)
        by[strategy] = measure(models, samples, k, vw)
    out = a.out or a.run / f"score_validity_r{a.round:02d}.json"
    out.write_text(json.dumps(by, indent=1))
    lines = table(by["random"], "the random run's picks") + table(by["random"] + by["committee"], "both runs' picks")
    lines += pick_means(by)
    print("\n".join(lines))
    print(f"rows: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
