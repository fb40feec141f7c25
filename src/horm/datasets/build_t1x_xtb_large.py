"""Build the larger GFN2-xTB reactive set: ``python -m horm.datasets.build_t1x_xtb_large``.

Same machinery as the bundled set (:mod:`horm.datasets.build_t1x_xtb`: ``horm sample`` +
``horm label``, both resumable), more reactions and both sampling styles per reaction:

1. Reaction choice (seeded, ``--seed``): every reaction the bundled ``t1x_xtb`` set uses
   (its train/val/OOD reactions and all its test candidates) is excluded. From a seeded
   permutation of the rest, the first ``2·--n-ts-eval`` reactions with 7–12 atoms are
   candidates for the **TS-evaluation set** (reactant and product relaxed with xTB, kept if
   their bond graphs survive; the first ``--n-ts-eval`` kept ones). They are never sampled
   or labelled and are in no split. The next ``--n-reactions`` reactions with 5–16 atoms
   are sampled and labelled.
2. Every labelled reaction gets T1x-style NEB iterations (``geoms_neb.hstore``) **and**
   RGD1-style TS + IRC points (``geoms_irc.hstore``).
3. Labels (energy, forces, FD Hessian) by :func:`horm.label.runner.label`.
4. Reaction-level split by a seeded hash (:func:`horm.data.splits.reaction_split`):
   ``test`` (held out, labelled) ``--test-fraction``, ``val`` ``--val-fraction``, the rest
   ``train``. Written as compacted stores in ``--out`` with ``ts_reactions/`` and
   ``manifest.json``.
5. ``--ship``: copy ``manifest.json``, ``ts_reactions/`` and the splits that fit in
   ``--ship-mb`` (in the order test, val, train) into the package
   (``src/horm/datasets/t1x_xtb_large/``); what is not shipped is rebuilt by this command.

Interrupt it at any time; a rerun with the same arguments continues (sampled reactions are
noted in each geometry store's metadata, labelled keys are skipped, the TS-evaluation set is
relaxed once). ``--profile smoke`` uses a few optimiser steps only (tests).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from horm.datasets.build_t1x_xtb import (DEFAULT_REACTIONS, XTB_SETTINGS, choose_reactions, sample_into,
                                         write_split, write_test_reactions)

HERE = Path(__file__).resolve().parent
SHIP_DIR = HERE / "t1x_xtb_large"
DEFAULT_OUT = Path.home() / ".cache" / "horm" / "t1x_xtb_large"  # full build (all splits)
DEFAULT_WORK = Path.home() / ".cache" / "horm" / "build_t1x_xtb_large"  # resumable intermediates
SPLITS = ("train", "val", "test")
TS_EVAL_ATOMS = (7, 12)  # small enough for a 4-model TS benchmark on a laptop
LABELLED_ATOMS = (5, 16)  # 17–21 atoms (94 of 840) cost 2–4x per Hessian; left out


def profile_settings(profile: str, seed: int):
    """(NEB settings, IRC settings) of a build profile: ``large`` (the bundled set's) or ``smoke``."""
    from horm.sample.irc import IrcSampleSettings
    from horm.sample.neb import NebSampleSettings

    if profile == "large":
        return (NebSampleSettings(n_images=10, neb_steps=30, ci_steps=30, fmax=0.1, keep_every=4, fraction=0.15,
                                  seed=seed),
                IrcSampleSettings(n_images=8, neb_steps=40, ts_steps=30, irc_steps=20, k=8))
    if profile == "smoke":
        return (NebSampleSettings(n_images=6, neb_steps=4, ci_steps=2, fmax=0.5, keep_every=2, fraction=0.5, seed=seed),
                IrcSampleSettings(n_images=6, neb_steps=6, ts_steps=4, irc_steps=3, k=2))
    from horm.errors import UsageError

    raise UsageError(f"build profile {profile!r} is not valid; choose one of large, smoke")


def bundled_reactions(files: list[Path]) -> set[str]:
    """Every reaction the bundled ``t1x_xtb`` set uses (splits, test reactions, test candidates).

    The test candidates are re-derived from the full reaction folder the bundled set was built
    from (``DEFAULT_REACTIONS``) when present, else from ``files``."""
    from horm.datasets.build_t1x_xtb import DEFAULT_OUT as BUNDLED

    man = json.loads((BUNDLED / "manifest.json").read_text())
    used = set(man["reactions"]["trainval"]) | set(man["reactions"]["ood"])
    used |= set(man["counts"]["test_reactions"]["names"])
    full = sorted(DEFAULT_REACTIONS.glob("rxn*.xyz")) or files
    cands, _, _ = choose_reactions(full, man["seed"], 8, 0, 0)  # the 24 set-aside test candidates
    return used | {f.stem for f in cands}


def choose_large(files: list[Path], seed: int, n_reactions: int, n_ts_eval: int,
                 exclude: set[str]) -> tuple[list[Path], list[Path]]:
    """Seeded, disjoint choice: (TS-evaluation candidates, reactions to label)."""
    from horm.data.xyz import read_reaction

    pool = [f for f in files if f.stem not in exclude]
    natoms = {f: read_reaction(f)[0].natoms for f in pool}
    order = [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))]
    lo, hi = TS_EVAL_ATOMS
    ts_c = [f for f in order if lo <= natoms[f] <= hi][: 2 * n_ts_eval]
    taken = set(ts_c)
    lo, hi = LABELLED_ATOMS
    labelled = [f for f in order if f not in taken and lo <= natoms[f] <= hi][:n_reactions]
    return ts_c, labelled


def split_reactions(rxns: list[str], val_fraction: float, test_fraction: float, seed: int) -> dict[str, set[str]]:
    """Reaction-level train/val/test by one seeded hash per reaction (stable as the set grows)."""
    from horm.data.splits import reaction_split

    test = reaction_split(rxns, test_fraction, seed)
    test_or_val = reaction_split(rxns, test_fraction + val_fraction, seed)
    return {"test": {r for r, t in zip(rxns, test) if t},
            "val": {r for r, t, tv in zip(rxns, test, test_or_val) if tv and not t},
            "train": {r for r, tv in zip(rxns, test_or_val) if not tv}}


def ts_eval_set(cands: list[Path], n: int, engine, out_dir: Path, work: Path) -> list[str]:
    """Relax the TS-evaluation reactions once (``work/ts_eval.json`` marks them done)."""
    marker = work / "ts_eval.json"
    if marker.is_file() and out_dir.is_dir():
        kept = json.loads(marker.read_text())
        if all((out_dir / f"{r}.xyz").is_file() for r in kept):
            return kept
    kept = write_test_reactions(cands, n, engine, out_dir)
    marker.write_text(json.dumps(kept))
    return kept


def _log_session(work: Path, seconds: dict, workers: int) -> list[dict]:
    """Append this session's timings to ``work/sessions.json``; returns all sessions (a resumed
    build's manifest then reports the summed wall time of every session)."""
    path = work / "sessions.json"
    sessions = json.loads(path.read_text()) if path.is_file() else []
    sessions.append({"seconds": seconds, "workers": workers,
                     "ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    path.write_text(json.dumps(sessions, indent=1))
    return sessions


def check_sizes(n_reactions: int, n_ts_eval: int, workers: int, val_fraction: float, test_fraction: float) -> None:
    """One line (SystemExit) before anything is sampled or written: counts that would slice the
    reaction list from the end or leave a split empty, and fractions the split would refuse only
    after the labelling."""
    if n_reactions < 1 or n_ts_eval < 0 or workers < 1:
        raise SystemExit(f"build_t1x_xtb_large: need n_reactions >= 1, n_ts_eval >= 0 and workers >= 1, got "
                         f"{n_reactions}, {n_ts_eval} and {workers}")
    if not (0.0 <= val_fraction and 0.0 <= test_fraction and val_fraction + test_fraction < 1.0):
        raise SystemExit(f"build_t1x_xtb_large: val and test fractions must be >= 0 with a sum below 1, got "
                         f"{val_fraction} and {test_fraction}")


def build(reactions: Path = DEFAULT_REACTIONS, out: Path = DEFAULT_OUT, work: Path = DEFAULT_WORK,
          seed: int = 0, n_reactions: int = 320, n_ts_eval: int = 48, workers: int = 2,
          val_fraction: float = 0.1, test_fraction: float = 0.1, profile: str = "large",
          exclude: set[str] | None = None) -> dict:
    """Sample, label and split (resumable); returns the manifest also written to ``out``."""
    from horm.data.store import HessianStore
    from horm.label import get_engine
    from horm.label.runner import label

    check_sizes(n_reactions, n_ts_eval, workers, val_fraction, test_fraction)
    t_start = time.perf_counter()
    files = sorted(Path(reactions).glob("rxn*.xyz"))
    if not files:
        raise SystemExit(f"{reactions}: no rxn*.xyz reaction files (is ../shared present?)")
    exclude = bundled_reactions(files) if exclude is None else set(exclude)
    ts_c, chosen = choose_large(files, seed, n_reactions, n_ts_eval, exclude)
    neb, irc = profile_settings(profile, seed)
    engine = get_engine("xtb", **XTB_SETTINGS)
    work, out = Path(work), Path(out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    times = {}
    t = time.perf_counter()
    kept_ts = ts_eval_set(ts_c, n_ts_eval, engine, out / "ts_reactions", work)
    times["ts_reactions_s"] = time.perf_counter() - t
    t = time.perf_counter()
    sample_into(work / "geoms_neb.hstore", chosen, "neb", engine, neb, workers)
    sample_into(work / "geoms_irc.hstore", chosen, "irc", engine, irc, workers)
    times["sample_s"] = time.perf_counter() - t
    t = time.perf_counter()
    runs = {m: label(work / f"geoms_{m}.hstore", engine, work / f"labelled_{m}.hstore", workers=workers).record()
            for m in ("neb", "irc")}
    times["label_s"] = time.perf_counter() - t
    rxns = sorted(f.stem for f in chosen)
    parts = split_reactions(rxns, val_fraction, test_fraction, seed)
    sfail, per_rxn = [], {}
    for m in ("neb", "irc"):
        with HessianStore.open(work / f"geoms_{m}.hstore") as g:
            sfail += g.failures()
            per_rxn[m] = g.meta.get("reaction_info", {})
    counts = {}
    common = dict(source="Transition1x validation reactions (ReactBench ts1x set)", seed=seed, sampler="neb+irc")
    labs = [HessianStore.open(work / f"labelled_{m}.hstore") for m in ("neb", "irc")]
    try:
        for split in SPLITS:
            counts[split] = write_split(out / f"{split}.hstore", labs, parts[split], work, sfail, split=split,
                                        **common)
    finally:
        for lab in labs:
            lab.close()
    counts["ts_reactions"] = {"reactions": len(kept_ts), "names": kept_ts}
    times["total_s"] = time.perf_counter() - t_start
    sessions = _log_session(work, {k: round(v, 1) for k, v in times.items()}, workers)
    sample_s = {m: round(sum(v.get("seconds", 0.0) for v in per_rxn[m].values()), 1) for m in per_rxn}
    manifest = {"counts": counts, "seconds": {k: round(sum(x["seconds"][k] for x in sessions), 1) for k in times},
                "sessions": sessions,
                "sampling_seconds_summed": sample_s, "label_runs": runs,
                "engine": {"name": engine.name, "level_of_theory": engine.level_of_theory,
                           "settings": dict(engine.settings)},
                "profile": profile, "neb_settings": vars(neb), "irc_settings": vars(irc), "workers": workers,
                "seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction,
                "excluded_reactions": len(exclude),
                "reactions": {s: sorted(parts[s]) for s in SPLITS} | {"ts_eval": kept_ts}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str) + "\n")
    return manifest


def ship(out: Path = DEFAULT_OUT, dst: Path = SHIP_DIR, max_mb: float = 30.0) -> list[str]:
    """Copy the manifest, ``ts_reactions/`` and the splits that fit in ``max_mb`` (order: test, val,
    train) into ``dst`` and write its README.md from the manifest. Returns the shipped splits."""
    out, dst = Path(out), Path(dst)
    man = json.loads((out / "manifest.json").read_text())
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copytree(out / "ts_reactions", dst / "ts_reactions", dirs_exist_ok=True)
    budget, shipped = max_mb * 1e6, []
    for split in ("test", "val", "train"):
        src, size = out / f"{split}.hstore", (out / f"{split}.hstore").stat().st_size
        if size <= budget:
            shutil.copyfile(src, dst / src.name)
            budget -= size
            shipped.append(split)
        else:
            (dst / src.name).unlink(missing_ok=True)
    man["shipped"] = {"splits": shipped, "max_mb": max_mb,
                      "rebuild": "python -m horm.datasets.build_t1x_xtb_large --workers N"}
    (dst / "manifest.json").write_text(json.dumps(man, indent=1) + "\n")
    from horm.datasets.large_readme import render

    (dst / "README.md").write_text(render(man))
    return shipped


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reactions", type=Path, default=DEFAULT_REACTIONS)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="full build: splits, ts_reactions, manifest")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK, help="resumable intermediates")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-reactions", type=int, default=320, help="reactions sampled and labelled")
    ap.add_argument("--n-ts-eval", type=int, default=48, help="reactions set aside for TS evaluation only")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--test-fraction", type=float, default=0.1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--profile", default="large", choices=("large", "smoke"))
    ap.add_argument("--keep-bundled", action="store_true",
                    help="do not exclude the bundled set's reactions (small tests on a few files)")
    ap.add_argument("--ship", action="store_true", help=f"then copy what fits into {SHIP_DIR}")
    ap.add_argument("--ship-mb", type=float, default=30.0)
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    m = build(a.reactions, a.out, a.work, a.seed, a.n_reactions, a.n_ts_eval, a.workers, a.val_fraction,
              a.test_fraction, a.profile, exclude=set() if a.keep_bundled else None)
    print(json.dumps({"counts": {k: v.get("samples", v.get("reactions")) for k, v in m["counts"].items()},
                      "seconds": m["seconds"]}, indent=1))
    if a.ship:
        print("shipped splits:", ", ".join(ship(a.out, SHIP_DIR, a.ship_mb)) or "none")


if __name__ == "__main__":
    main()
