"""Issue 15 end to end, resumably: data → 4 trainings → TS benchmark vs xTB → evaluation → report.

    python benchmarks/ts_models.py --workers 2 [--out runs/ts_models] [--install]

Stages (each a ``horm`` verb run as a subprocess, each resumable; kill the driver at any time
and run the same command again):

1. **data**: ``python -m horm.datasets.build_t1x_xtb_large --workers W --out DATA`` (skipped once
   ``DATA/manifest.json`` exists; the builder itself resumes a killed build; ``--n-reactions 640``
   labels all 550 eligible reactions instead of 320).
2. **train**: ``horm train configs/t1x_xtb_<model>.yaml`` for the four shipped models, one after
   the other with ``W`` torch threads, or with ``--lanes 2`` two at a time with one thread each,
   each training followed by its TS benchmark (so training and TS search overlap on 2 cores); a
   run folder with checkpoints but no ``model.pt`` is resumed (``resume=true``); the configs run
   3,000 steps and cap each run at 2 h of wall time summed over sessions.
3. **ts**: ``horm ts benchmark DATA/ts_reactions`` with xTB, then with each model and
   ``--reference`` the xTB run (Fig. 2 counts, TS RMSD, barrier MAE; resumes per reaction).
4. **evaluate**: ``horm evaluate`` of the four models on the held-out ``DATA/test.hstore``
   (Tables 1, 2, A.1); full autograd Hessians cost ~1.5 CPU-s per 13–16-atom molecule for a
   ``small`` leftnet (the head: 0.02 s), so ~40 min per autograd model for ~1.5 k molecules on
   one core (``--eval-max N`` for fewer).
5. **install** (``--install``): copy the four ``model.pt`` into ``src/horm/pretrained/`` under
   their names (``python -m horm.pretrained install``); with ``--install`` the data stage also
   ships what fits of the set into ``src/horm/datasets/t1x_xtb_large/`` (``--ship``).
6. **report**: ``OUT/report.md``: intended counts against xTB's, median model calls and seconds
   per reaction, TS RMSD and barrier MAE, the Table 1 MAEs, and the issue's targets checked.

``--stages`` runs a subset (e.g. ``--stages ts report``); ``--smoke`` shrinks every stage to
seconds (2 labelled reactions, 1 TS-evaluation reaction, 3 training steps) to test the driver.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = {  # shipped name -> config
    "t1x-xtb-leftnet-ef": "configs/t1x_xtb_leftnet_ef.yaml",
    "t1x-xtb-leftnet-efh": "configs/t1x_xtb_leftnet_efh.yaml",
    "t1x-xtb-leftnet-df-efh": "configs/t1x_xtb_leftnet_df_efh.yaml",
    "t1x-xtb-hessian-head": "configs/t1x_xtb_hessian_head.yaml",
}
STAGES = ("data", "train", "ts", "evaluate", "install", "report")


def run(cmd: list[str], threads: int) -> None:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)


def horm(*args: str) -> list[str]:
    return [sys.executable, "-m", "horm.cli", *args]


def split_path(a, split: str) -> Path:
    """``DATA/<split>.hstore``; the smoke build is too small for three splits, so it uses train for all."""
    return a.data / f"{'train' if a.smoke else split}.hstore"


def stage_data(a) -> None:
    if (a.data / "manifest.json").is_file():
        print(f"data: {a.data / 'manifest.json'} exists, skipped")
        return
    extra = ["--n-reactions", "2", "--n-ts-eval", "1", "--profile", "smoke", "--reactions", str(a.reactions),
                                   "--keep-bundled"] \
        if a.smoke else []
    from horm.datasets.build_t1x_xtb_large import DEFAULT_OUT, DEFAULT_WORK

    work = DEFAULT_WORK if a.data == DEFAULT_OUT else a.data.parent / (a.data.name + "_work")
    ship = ["--ship"] if a.install and not a.smoke else []  # also copy what fits into the package
    size = ["--n-reactions", str(a.n_reactions)] if a.n_reactions and not a.smoke else []
    run([sys.executable, "-m", "horm.datasets.build_t1x_xtb_large", "--workers", str(a.workers), "--out", str(a.data),
         "--work", str(work), *size, *ship, *extra], 1)


def _train(a, name: str, threads: int) -> None:
    out = a.out / "runs" / name
    if (out / "model.pt").is_file():
        print(f"train: {out / 'model.pt'} exists, skipped")
        return
    resume = (out / "checkpoints").is_dir() and any((out / "checkpoints").glob("*.ckpt"))
    extra = ["trainer.max_steps=3", "trainer.val_every_n_steps=3", "trainer.ckpt_every_n_steps=3",
             "model.overrides.hidden_channels=8" if "hessian" not in name else "model.overrides.head_channels=4",
             "model.preset=tiny"] if a.smoke else []
    run(horm("train", str(REPO / MODELS[name]), "--data", str(split_path(a, "train")), "--val",
             str(split_path(a, "val")), "--out", str(out), "trainer.progress_bar=false",
             f"resume={'true' if resume else 'false'}", *extra), threads)


def _ts(a, potential: str, out: Path, workers: int, reference: Path | None) -> None:
    ref = ["--reference", str(reference)] if reference else []
    run(horm("ts", "benchmark", str(a.data / "ts_reactions"), "--potential", potential, "--out", str(out),
             "--workers", str(workers), "--timeout", str(a.timeout), "--dtype", a.dtype, *ref), 1)


def stage_train(a) -> None:
    """The four trainings one after the other with ``--workers`` threads (``--lanes 1``), or
    ``--lanes L`` chains at once with one thread each, where a chain is a training followed by
    its TS benchmark against xTB (run first), so that training and TS search overlap."""
    if a.lanes <= 1:
        for name in MODELS:
            _train(a, name, a.workers)
        return
    from concurrent.futures import ThreadPoolExecutor

    _ts(a, "xtb", a.out / "ts" / "xtb", a.workers, None)

    def chain(name: str) -> None:
        _train(a, name, 1)
        _ts(a, str(a.out / "runs" / name), a.out / "ts" / name, 1, a.out / "ts" / "xtb")

    with ThreadPoolExecutor(a.lanes) as pool:
        for f in [pool.submit(chain, n) for n in MODELS]:
            f.result()


def stage_ts(a) -> None:
    ts = a.out / "ts"
    _ts(a, "xtb", ts / "xtb", a.workers, None)
    for name in MODELS:
        _ts(a, str(a.out / "runs" / name), ts / name, a.workers, ts / "xtb")


def stage_evaluate(a) -> None:
    args = [str(a.out / "runs" / n) for n in MODELS] + [x for n in MODELS for x in ("--name", n)]
    n = 4 if a.smoke else a.eval_max
    extra = ["--max-samples", str(n), "--spread"] if n else []
    run(horm("evaluate", *args, "--data", str(split_path(a, "test")), "--out", str(a.out / "eval_test"), *extra),
        a.workers)


def stage_install(a) -> None:
    for name in MODELS:
        run([sys.executable, "-m", "horm.pretrained", "install", name, str(a.out / "runs" / name)], 1)


def _table1(path: Path) -> dict[str, dict[str, float]]:
    """{metric label: {model: mean}} from an evaluation's table1.csv."""
    out: dict[str, dict[str, float]] = {}
    if not path.is_file():
        return out
    with open(path) as fh:
        rows = list(csv.reader(fh))
    for r in rows[1:]:
        if r[2] == "mean":
            out[r[0]] = {m: float(v) if v else float("nan") for m, v in zip(rows[0][3:], r[3:])}
    return out


def _ts_row(d: Path) -> dict:
    from horm.ts.benchmark import read_results
    from horm.ts.report import summarise

    recs = read_results(d) if (d / "results.jsonl").is_file() else []
    s = summarise(recs)
    mc = [r["model_calls"] for r in recs if isinstance(r.get("model_calls"), dict)]
    med = lambda k: sorted(c.get(k, 0) for c in mc)[len(mc) // 2] if mc else None  # noqa: E731
    ref = json.loads((d / "summary.json").read_text()).get("reference", {}) if (d / "summary.json").is_file() else {}
    return {"n": s["n"], "path": s["path"]["count"], "ts": s["TS"]["count"], "irc": s["IRC"]["count"],
            "intended": s["intended"]["count"], "median_s": s["median_seconds"],
            "median_ef": med("energy_forces"), "median_hess": med("hessian"),
            "rmsd": ref.get("ts_rmsd_median"), "barrier_mae": ref.get("barrier_mae_kcal_mol"),
            "n_both": ref.get("n_both_solved")}


def stage_report(a) -> Path:
    fmt = lambda v, f=".3g": "–" if v is None or v != v else format(v, f)  # noqa: E731
    rows = {"xtb": _ts_row(a.out / "ts" / "xtb")} | {n: _ts_row(a.out / "ts" / n) for n in MODELS}
    ref = rows["xtb"]["intended"] or float("nan")
    t1: dict[str, dict[str, float]] = {}
    for csv_path in sorted(a.out.glob("eval_test*/table1.csv")):  # one evaluation, or one per batch of models
        for metric, cols in _table1(csv_path).items():
            t1.setdefault(metric, {}).update(cols)
    lines = ["# Issue 15: shipped xTB-level models, TS search against xTB", "",
             f"Set-aside reactions: {rows['xtb']['n']} (`{a.data / 'ts_reactions'}`); "
             "xTB's intended count = 100 %.", "",
             "| potential | path | TS | IRC | intended | % of xTB | median E-F calls | median Hessian calls | "
             "median s | both intended | TS RMSD Å | barrier MAE kcal/mol |", "|---" * 12 + "|"]
    for n, r in rows.items():
        lines.append(f"| {n} | {r['path']} | {r['ts']} | {r['irc']} | {r['intended']} | "
                     f"{fmt(100 * r['intended'] / ref, '.0f')} | {fmt(r['median_ef'], 'd')} | "
                     f"{fmt(r['median_hess'], 'd')} | "
                     f"{fmt(r['median_s'], '.1f')} | {fmt(r['n_both'], 'd')} | {fmt(r['rmsd'])} | "
                     f"{fmt(r['barrier_mae'])} |")
    e, h = t1.get("Energy MAE", {}), t1.get("Hessian MAE", {})
    lines += ["", "Held-out split (`test.hstore`), mean over molecules:", "",
              "| model | energy MAE eV | force MAE eV/Å | Hessian MAE eV/Å² |", "|---|---|---|---|"]
    lines += [f"| {n} | {fmt(e.get(n))} | {fmt(t1.get('Force MAE', {}).get(n))} | {fmt(h.get(n))} |" for n in MODELS]
    i = {n.removeprefix("t1x-xtb-"): rows[n]["intended"] for n in MODELS}
    checks = [("leftnet E-F-H ≥ 60 % of xTB's intended", i["leftnet-efh"] >= 0.6 * ref),
              ("leftnet E-F-H ≥ 1.5 × leftnet E-F", i["leftnet-efh"] >= 1.5 * max(i["leftnet-ef"], 1e-9)),
              ("Hessian head ≥ leftnet E-F-H", i["hessian-head"] >= i["leftnet-efh"]),
              ("leftnet E-F-H Hessian MAE ≤ 0.5 eV/Å²", h.get("t1x-xtb-leftnet-efh", float("inf")) <= 0.5),
              ("leftnet E-F-H energy MAE ≤ 0.1 eV", e.get("t1x-xtb-leftnet-efh", float("inf")) <= 0.1)]
    lines += ["", "Targets:", ""] + [f"- [{'x' if ok else ' '}] {what}" for what, ok in checks]
    lines += ["", "Stage counts above say where a miss happens (path, TS or IRC)."]
    path = a.out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())
    return path


def main(argv=None) -> None:
    from horm.datasets.build_t1x_xtb import DEFAULT_REACTIONS
    from horm.datasets.build_t1x_xtb_large import DEFAULT_OUT

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2, help="processes for labelling/TS search, threads for training")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "ts_models")
    ap.add_argument("--data", type=Path, default=DEFAULT_OUT, help="the larger xTB set (built here if absent)")
    ap.add_argument("--reactions", type=Path, default=DEFAULT_REACTIONS)
    ap.add_argument("--n-reactions", type=int, default=None,
                    help="reactions the data stage labels (the builder's default: 320; 640 asks for all 550 eligible)")
    ap.add_argument("--lanes", type=int, default=1,
                    help="training+TS chains run at once, one thread each (1: trainings one after the other "
                         "with --workers threads)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per reaction in the TS benchmark")
    ap.add_argument("--dtype", default="float32", help="the models' precision in the TS benchmark (float32: ~2.5x "
                    "cheaper Hessians; the published numbers used it)")
    ap.add_argument("--eval-max", type=int, default=None,
                    help="evaluate N test molecules evenly spread over the split (full Hessians of an autograd 'small' "
                         "model cost ~1.5 CPU-s per 13-16-atom molecule)")
    ap.add_argument("--stages", nargs="*", default=[s for s in STAGES if s != "install"], choices=STAGES)
    ap.add_argument("--install", action="store_true", help="also copy the trained models into the package")
    ap.add_argument("--smoke", action="store_true", help="seconds-sized stages (tests the driver)")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    stages = list(a.stages) + (["install"] if a.install and "install" not in a.stages else [])
    for s in STAGES:
        if s in stages:
            print(f"== {s}", flush=True)
            globals()[f"stage_{s}"](a)


if __name__ == "__main__":
    main()
