"""Where along a reaction is a model wrong? Errors grouped by the sampler stage of each sample.

A TS search needs the surface near saddles; an average over a held-out split mixes minima,
NEB images far from any stationary point and saddles. This evaluates each model on the
samples of each stage (``horm.data.io.select_origins``: ``reactant``/``product``, the NEB
iterations, the final NEB band, the converged TS, the IRC points) and prints one row per
(stage, model): energy, force and Hessian MAE, the median |cos| of the lowest normal mode,
how often the model's count of imaginary modes equals the reference's, and the model's median
count. At ``ts`` the reference has exactly one, so that column is the share of true saddles
the model also sees as first-order saddles:

    python benchmarks/errors_by_origin.py DATA.hstore -p t1x-xtb-leftnet-ef -p t1x-xtb-leftnet-efh \
        [--max-per-stage 60] [--stage ts ...] [--dtype float32] [--json OUT.json]

Stages with more than ``--max-per-stage`` samples are evaluated on that many, evenly spread
over the file (the store is ordered by reaction, so all reactions are covered).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

STAGES = {"endpoints": ["reactant", "product"], "neb-iterations": ["neb:iter"], "neb-final": ["neb:final"],
          "ts": ["ts"], "irc": ["irc"]}


def _neb_iter_prefixes(ds) -> list[str]:
    """``neb:iter<k>`` for every k the file holds (the stage name has its iteration number in it)."""
    return sorted({":".join(str(ds[i].origin).split(":")[:2]) for i in range(len(ds))
                   if str(ds[i].origin).startswith("neb:iter")})


def by_origin(data: Path, potentials: list[str], max_per_stage: int, dtype: str | None,
              only: list[str] | None = None) -> dict:
    """``{stage: {potential: {metric: value}}}`` plus ``n`` (samples) per stage (``only``: these stages)."""
    import numpy as np

    from horm.data.io import open_dataset, select_origins
    from horm.errors import DataError
    from horm.evaluate.metrics import evaluate_model, summarise
    from horm.models.files import load_model
    from horm.runtime import thread_limit

    ds = open_dataset(data)
    models = {p: load_model(p, dtype=dtype)[0] for p in potentials}
    out: dict = {}
    for stage, prefixes in STAGES.items():
        if only and stage not in only:
            continue
        if stage == "neb-iterations":
            prefixes = _neb_iter_prefixes(ds) or prefixes
        try:
            sub = select_origins(ds, prefixes, data)
        except DataError as e:
            print(f"{stage}: skipped ({e})")
            continue
        out[stage] = {"n": min(len(sub), max_per_stage)}
        for name, model in models.items():
            t0 = time.perf_counter()
            with thread_limit(1):
                m, _ = evaluate_model(model, sub, batch_size=4, max_samples=max_per_stage, spread=True)
            s = summarise(m)
            out[stage][name] = {k: s[k]["mean"] for k in ("energy_mae", "forces_mae", "hessian_mae", "n_neg_agree")}
            out[stage][name]["cos_mode1_median"] = s["cos_mode1"]["median"]
            out[stage][name]["n_neg_pred_median"] = s["n_neg_pred"]["median"]
            out[stage][name]["n_neg_ref_median"] = float(np.nanmedian(m["n_neg_ref"]))
            out[stage][name]["seconds"] = round(time.perf_counter() - t0, 1)
            _row(stage, out[stage]["n"], name, out[stage][name])
    return out


def _row(stage: str, n: int, name: str, r: dict) -> None:
    print(f"{stage:15s} {n:4d} {name[-26:]:26s} {r['energy_mae']:8.3f} {r['forces_mae']:8.3f} {r['hessian_mae']:8.3f} "
          f"{r['cos_mode1_median']:7.2f} {r['n_neg_agree']:7.2f} {r['n_neg_pred_median']:5.0f} / {r['n_neg_ref_median']:.0f}"
          f" {r['seconds']:7.1f}", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="labelled data with sampler origins (a horm store)")
    ap.add_argument("-p", "--potential", action="append", required=True, help="model file, run folder or shipped name")
    ap.add_argument("--max-per-stage", type=int, default=60)
    ap.add_argument("--dtype", default="float32", help="model dtype (float32 as the TS benchmark runs)")
    ap.add_argument("--stage", action="append", choices=list(STAGES), help="only these stages (repeat; default all)")
    ap.add_argument("--json", type=Path, help="write the table here")
    a = ap.parse_args(argv)
    if a.max_per_stage < 1:
        ap.error(f"--max-per-stage must be >= 1, got {a.max_per_stage}")
    if not a.data.exists():
        ap.error(f"{a.data}: no such file")
    print(f"{'stage':15s} {'n':>4s} {'model':26s} {'E eV':>8s} {'F eV/Å':>8s} {'H eV/Å²':>8s} {'|cos|1':>7s} "
          f"{'#imag=':>7s} {'#imag model / ref':>17s} {'s':>5s}")
    res = by_origin(a.data, a.potential, a.max_per_stage, a.dtype, a.stage)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
