"""Issue 16's experiment in one resumable command: committee selection against random selection.

    python benchmarks/learn_curve.py --workers 2 [--out runs/learn_curve] [--rounds 4 --budget 50] [--preset tiny]

Stages (each resumable; kill the driver at any time and run the same command again):

1. **seed**: a seed store of ``--seed-samples`` (about 1 k) geometries spread over the bundled
   ``t1x_xtb`` training split (53 reactions), and two committee models (seeds 0 and 1) trained
   on it with ``configs/t1x_xtb_leftnet_efh.yaml`` for ``--seed-steps`` steps
   (``horm train``; resumed from checkpoints after a kill).
2. **pool**: a folder of links to the training reactions of ``t1x_xtb_large`` (its manifest's
   ``train`` list, read from ``../shared/data/t1x_val_reactions``); none is a held-out reaction.
3. **learn**: ``horm learn`` with ``--strategy committee`` and then ``--strategy random``, the
   same rounds, budget, pool, seed models and fine-tuning; held out: the 48
   ``t1x_xtb_large/ts_reactions`` (TS search against xTB's own) and ``test.hstore``
   (Hessian MAE on ``--eval-max`` samples). Each run's ``report.md`` draws both curves.
4. **summary**: per round, labels and intended TSs of both strategies side by side, the ratio
   at the last round and the seconds each round took.

``--trust LO HI`` adds a third run, ``--strategy window`` (DP-GEN's trust window on the eigen
score: random picks among scores in [LO, HI], none above HI), after the other two, compared
with the random one; ``benchmarks/learn_score_validity.py`` measures where to put LO and HI.

``--parallel`` trains the two seed models at once and runs both strategies at once (each
with ``--workers`` processes), so that a run cut short has both curves to the same round.
``--heldout-max N`` keeps the first N held-out reactions (by name); ``--reference-ts DIR``
starts each run's engine TS search from an earlier ``horm ts benchmark`` of xTB with the same
TS settings (copied in; its other reactions are ignored).

``--smoke`` shrinks everything (2 pool reactions, 1 held-out reaction, tiny models, 3 steps,
budget 2, 1 round) to test the driver in about two minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from itertools import zip_longest
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_REACTIONS = REPO.parent / "shared" / "data" / "t1x_val_reactions"
CONFIG = REPO / "configs" / "t1x_xtb_leftnet_efh.yaml"
FAST_TS = "path: {method: none, n_images: 5}\ntsopt: {max_steps: 5}\nirc: {max_steps: 10, opt_max_steps: 30}\n"


def start(cmd: list[str], threads: int = 1) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    print("+", " ".join(cmd), flush=True)
    return subprocess.Popen(cmd, env=env)


def wait_all(procs: list[subprocess.Popen]) -> None:
    codes = [p.wait() for p in procs]
    bad = [(p.args, c) for p, c in zip(procs, codes) if c]
    if bad:
        raise SystemExit(f"failed ({bad[0][1]}): {' '.join(map(str, bad[0][0]))}")


def horm(*args: str) -> list[str]:
    return [sys.executable, "-m", "horm.cli", *args]


def stage_seed(a) -> list[Path]:
    from horm.data.store import HessianStore
    from horm.datasets import bundled_split_path
    from horm.evaluate.metrics import sample_indices

    seed = a.out / "seed.hstore"
    if not seed.exists():
        tmp = a.out / "seed.tmp.hstore"
        tmp.unlink(missing_ok=True)
        with HessianStore.open(bundled_split_path("train")) as src, \
                HessianStore.create(tmp, src.meta["level_of_theory"], **src.meta["provenance"]) as st:
            st.extend([src[i] for i in sample_indices(len(src), a.seed_samples, spread=True)])
        os.replace(tmp, seed)
    models, procs = [], []
    for s in (0, 1):
        out = a.out / "seed_models" / f"m{s}"
        models.append(out)
        if (out / "model.pt").is_file():
            continue
        resume = (out / "checkpoints").is_dir() and any((out / "checkpoints").glob("*.ckpt"))
        small = ["model.preset=tiny", "model.overrides.hidden_channels=16", "model.overrides.num_layers=1",
                 "trainer.val_every_n_steps=3", "trainer.ckpt_every_n_steps=3"] if a.smoke else []
        procs.append(start(horm("train", str(CONFIG), "--data", str(seed), "--val", str(a.val), "--out", str(out),
                                "trainer.progress_bar=false", f"trainer.max_steps={a.seed_steps}",
                                f"trainer.seed={s}", f"model.preset={a.preset}",
                                f"resume={'true' if resume else 'false'}", *small), a.workers))
        if not a.parallel:
            wait_all(procs)
    wait_all(procs)
    return models


def stage_pool(a) -> Path:
    manifest = json.loads((a.data / "manifest.json").read_text())
    names = sorted(manifest["reactions"]["train"])[: 2 if a.smoke else None]
    pool = a.out / "pool_reactions"
    pool.mkdir(parents=True, exist_ok=True)
    held = {p.stem for p in a.heldout.glob("*.xyz")}
    for n in names:
        src, dst = SHARED_REACTIONS / f"{n}.xyz", pool / f"{n}.xyz"
        if n not in held and src.is_file() and not dst.exists():
            dst.symlink_to(src)
    return pool


def stage_learn(a, pool: Path, models: list[Path]) -> None:
    common = [str(pool), "--engine", "xtb", "--models", *map(str, models), "--rounds", str(a.rounds),
              "--budget", str(a.budget), "--seed-store", str(a.out / "seed.hstore"),
              "--heldout-reactions", str(a.heldout), "--heldout-store", str(a.test),
              "--eval-max-samples", str(a.eval_max), "--finetune-steps", str(a.finetune_steps),
              "--workers", str(a.workers), "--timeout", str(a.timeout), "--seed", "0",
              "--eval-models", str(a.eval_models), "--pool-max", str(a.pool_max)]
    if a.pool_reactions:
        common += ["--pool-reactions", str(a.pool_reactions)]
    if a.smoke:
        (a.out / "fast_ts.yaml").write_text(FAST_TS)
        common += ["--settings", str(a.out / "fast_ts.yaml")]
    cm, rnd = a.out / "committee", a.out / "random"
    for d in (cm, rnd):
        d.mkdir(parents=True, exist_ok=True)  # the random run names cm (--compare) before cm has written
        if a.reference_ts is not None and not (d / "reference_ts").exists():
            shutil.copytree(a.reference_ts, d / "reference_ts", ignore=shutil.ignore_patterns("*.lock"))
    first = start(horm("learn", *common, "--out", str(cm), "--strategy", "committee"), 1)
    if not a.parallel:
        wait_all([first])
    second = start(horm("learn", *common, "--out", str(rnd), "--strategy", "random", "--compare", str(cm)), 1)
    wait_all([first, second])
    from horm.learn.report import write_report

    write_report(cm, rnd)  # the committee run's report with both curves too
    if a.trust:
        win = a.out / "window"
        win.mkdir(parents=True, exist_ok=True)
        if a.reference_ts is not None and not (win / "reference_ts").exists():
            shutil.copytree(a.reference_ts, win / "reference_ts", ignore=shutil.ignore_patterns("*.lock"))
        wait_all([start(horm("learn", *common, "--out", str(win), "--strategy", "window", "--trust",
                             *map(str, a.trust), "--compare", str(rnd)), 1)])


def stage_summary(a) -> None:
    from horm.learn.report import comparison_line, intended_count, last_common_round, paired_line, read_records

    names = ["committee", "random"] + (["window"] if (a.out / "window" / "state.json").exists() else [])
    runs = {s: read_records(a.out / s) for s in names}
    print(f"{'round':>5} | " + " | ".join(f"{'labels':>6} {'intended':>8} {'s':>7} ({s})" for s in names))
    for recs in zip_longest(*runs.values()):  # a run cut short leaves its later cells blank
        cells = [f"{'':>23}" if x is None else f"{x['labels']:>6} {intended_count(x)!s:>8} {x.get('seconds', 0):>7.0f}"
                 for x in recs]
        r = next(x["round"] for x in recs if x is not None)
        print(f"{r:>5} | " + " | ".join(f"{c}{' ' * (len(s) + 3)}" for c, s in zip(cells, names)))
    for first in names[::2]:  # committee vs random, window vs random
        pair = {first: runs[first], "random": runs["random"]}
        if (line := comparison_line(pair)) is not None:
            print(line)
            if (per := paired_line({first: a.out / first, "random": a.out / "random"}, last_common_round(pair))):
                print(per)


def main() -> None:
    from horm.datasets import bundled_path

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "runs" / "learn_curve")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--budget", type=int, default=50, help="labels per round (both strategies)")
    p.add_argument("--seed-samples", type=int, default=1000)
    p.add_argument("--seed-steps", type=int, default=3000)
    p.add_argument("--finetune-steps", type=int, default=300)
    p.add_argument("--pool-reactions", type=int, default=40, help="training reactions searched per round")
    p.add_argument("--pool-max", type=int, default=1000, help="visited geometries scored per round")
    p.add_argument("--preset", default="small", help="LEFTNet preset of the seed models (tiny: ~6x cheaper steps)")
    p.add_argument("--eval-max", type=int, default=300, help="held-out labelled samples per round")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--eval-models", type=int, default=1, help="committee models searched on the held-out reactions "
                   "(2: the curve is the committee's mean, at twice the evaluation cost)")
    p.add_argument("--parallel", action="store_true", help="both seed trainings, then both strategies, at once")
    p.add_argument("--heldout-max", type=int, default=None, help="the first N held-out reactions only")
    p.add_argument("--reference-ts", type=Path, default=None, help="an xTB horm ts benchmark folder to start from")
    p.add_argument("--trust", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="also run --strategy window with this trust window (eigen score, eV/Å²)")
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args()
    a.data = bundled_path("t1x_xtb_large")
    a.val, a.test = a.data / "val.hstore", a.data / "test.hstore"
    a.heldout = a.data / "ts_reactions"
    if a.smoke:
        a.rounds, a.budget, a.seed_samples, a.seed_steps, a.finetune_steps, a.eval_max = 1, 2, 32, 3, 3, 4
        a.pool_reactions = None
        a.heldout = a.out / "heldout_smoke"
        a.heldout.mkdir(parents=True, exist_ok=True)
        first = sorted((a.data / "ts_reactions").glob("*.xyz"))[0]
        if not (a.heldout / first.name).exists():
            (a.heldout / first.name).symlink_to(first)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.heldout_max and not a.smoke:
        sub = a.out / f"heldout_{a.heldout_max}"
        sub.mkdir(exist_ok=True)
        for f in sorted(a.heldout.glob("*.xyz"))[: a.heldout_max]:
            if not (sub / f.name).exists():
                (sub / f.name).symlink_to(f.resolve())
        a.heldout = sub
    models = stage_seed(a)
    stage_learn(a, stage_pool(a), models)
    stage_summary(a)


if __name__ == "__main__":
    main()
