"""Regenerate the bundled ``t1x_xtb`` dataset: ``python -m horm.datasets.build_t1x_xtb``.

Pipeline (all at GFN2-xTB through tblite, 2 worker processes by default):

1. Read the Transition1x validation reactions in ``../shared/data/t1x_val_reactions``
   (``--reactions``), fix a seeded permutation (``--seed``) and take, in that order,
   ``--n-test`` test reactions (7–10 atoms), ``--n-trainval`` reactions with ≤ 12 atoms
   (train + val) and ``--n-ood`` reactions with 13–16 atoms (out-of-distribution).
2. Train/val reactions: T1x-style NEB sampling (:mod:`horm.sample.neb`); OOD
   reactions: RGD1-style TS + IRC sampling (:mod:`horm.sample.irc`). Geometries go into
   unlabelled stores in the work directory; each sampled reaction is noted in the
   store's metadata, so an interrupted build resumes.
3. Label every geometry (energy, forces, FD Hessian) with :func:`horm.label.runner.label`
   (resumable; failures recorded).
4. Split train/val by reaction (:func:`horm.data.splits.reaction_split`), write compacted
   ``train.hstore``, ``val.hstore``, ``ood.hstore`` into the package directory, and the
   test reactions (reactant and product relaxed with xTB; kept only if their bond graphs
   do not change) into ``test_reactions/``. ``manifest.json`` records counts and timings.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "t1x_xtb"
DEFAULT_REACTIONS = HERE.parents[2].parent / "shared" / "data" / "t1x_val_reactions"
# The engine settings are pinned here, so that a change of the engine's defaults cannot
# silently change (or, on resume, mix) the labels of the bundled set.
XTB_SETTINGS = dict(method="GFN2-xTB", electronic_temperature=300.0, accuracy=1.0, hessian_accuracy=0.01,
                    hessian_step=0.0025, retry=True, retry_temperature=1000.0)
DEFAULT_WORK = Path.home() / ".cache" / "horm" / "build_t1x_xtb"  # resumable intermediates


def choose_reactions(files: list[Path], seed: int, n_test: int, n_trainval: int, n_ood: int):
    """Seeded, disjoint choice: (test candidates, train/val, ood) lists of files."""
    from horm.data.xyz import read_reaction

    natoms = {f: read_reaction(f)[0].natoms for f in files}
    order = [files[i] for i in np.random.default_rng(seed).permutation(len(files))]
    test = [f for f in order if 7 <= natoms[f] <= 10][: 3 * n_test]  # spares for rejected ones
    rest = [f for f in order if f not in set(test)]
    trainval = [f for f in rest if natoms[f] <= 12][:n_trainval]
    ood = [f for f in rest if 13 <= natoms[f] <= 16][:n_ood]
    return test, trainval, ood


def sample_into(store_path: Path, files: list[Path], method: str, engine, settings, workers: int) -> None:
    """Sample every reaction of ``files`` not yet noted in the store's metadata."""
    from horm.jobs import JobOptions
    from horm.sample.run import sample_to

    sample_to(store_path, files, method, engine, settings, JobOptions(workers=workers))


def write_split(dst: Path, labelled, keep: set[str], tmp_dir: Path, sampling_failures: list[dict],
                **meta) -> dict:
    """Copy samples and failures (sampling and labelling) of reactions in ``keep`` into a
    compacted store ``dst``; returns its counts. ``labelled``: one store or a list of stores
    (same level of theory) whose samples are concatenated in order."""
    from collections import Counter

    from horm.data.store import HessianStore

    stores = labelled if isinstance(labelled, (list, tuple)) else [labelled]
    tmp = tmp_dir / (dst.name + ".tmp")
    out = HessianStore.create(tmp, stores[0].meta["level_of_theory"], overwrite=True,
                              **{**stores[0].meta.get("provenance", {}), **meta})
    samples = [s for lab in stores for s in lab if s.rxn in keep]
    out.extend(samples)
    label_fails = [f for lab in stores for f in lab.failures()]
    fails = [f for f in sampling_failures + label_fails if f["key"].split(":")[0] in keep]
    for f in fails:
        out.record_failure(f["key"], f["reason"], **(f.get("details") or {}))
    dst.unlink(missing_ok=True)
    out.compact(dst)
    out.close()
    tmp.unlink()
    Path(str(tmp) + "-lock").unlink(missing_ok=True)
    origins = Counter(s.origin.split(":")[0] for s in samples)
    return {"reactions": len(keep), "reactions_with_samples": len({s.rxn for s in samples}),
            "samples": len(samples), "failures": len(fails), "origins": dict(sorted(origins.items())),
            "atoms": [min(s.natoms for s in samples), max(s.natoms for s in samples)] if samples else None,
            "bytes": dst.stat().st_size}


def write_test_reactions(cands: list[Path], n: int, engine, out_dir: Path) -> list[str]:
    """Relax reactant and product with the engine; keep reactions whose bond graphs survive."""
    from horm.data.xyz import read_reaction, write_reaction
    from horm.sample.neb import geometry
    from horm.calculators.potential import HormCalculator
    from horm.ts.irc import relax
    from horm.ts.verify import bond_graph, same_graph

    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.xyz"):
        old.unlink()
    kept: list[str] = []
    calc = HormCalculator(engine, name=engine.name)
    for f in cands:
        if len(kept) >= n:
            break
        r, p = read_reaction(f)
        ends = []
        try:
            for s in (r, p):
                a, ok, _ = relax(s.to_atoms(), calc, fmax=0.05, max_steps=300)
                if not ok or not same_graph(bond_graph(s.numbers, s.pos), bond_graph(a.numbers, a.positions)):
                    break
                ends.append(geometry(s, a.positions, f.stem, s.origin))
        except Exception:  # noqa: BLE001 - an engine failure just rejects the candidate
            continue
        if len(ends) == 2 and not same_graph(bond_graph(r.numbers, ends[0].pos), bond_graph(p.numbers, ends[1].pos)):
            write_reaction(out_dir / f.name, ends[0], ends[1])
            kept.append(f.stem)
    return kept


def build(reactions: Path = DEFAULT_REACTIONS, out: Path = DEFAULT_OUT, work: Path = DEFAULT_WORK,
          seed: int = 0, n_test: int = 8, n_trainval: int = 60, n_ood: int = 16, workers: int = 2,
          val_fraction: float = 0.2) -> dict:
    from horm.data.splits import reaction_split
    from horm.data.store import HessianStore
    from horm.label import get_engine
    from horm.label.runner import label
    from horm.sample.irc import IrcSampleSettings
    from horm.sample.neb import NebSampleSettings

    t_start = time.perf_counter()
    files = sorted(Path(reactions).glob("rxn*.xyz"))
    if not files:
        raise SystemExit(f"{reactions}: no rxn*.xyz reaction files (is ../shared present?)")
    test_c, trainval, ood = choose_reactions(files, seed, n_test, n_trainval, n_ood)
    engine = get_engine("xtb", **XTB_SETTINGS)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    neb = NebSampleSettings(n_images=10, neb_steps=30, ci_steps=30, fmax=0.1, keep_every=4, fraction=0.15, seed=seed)
    irc = IrcSampleSettings(n_images=8, neb_steps=40, ts_steps=30, irc_steps=20, k=8)
    times = {}
    t = time.perf_counter()
    sample_into(work / "geoms_trainval.hstore", trainval, "neb", engine, neb, workers)
    sample_into(work / "geoms_ood.hstore", ood, "irc", engine, irc, workers)
    times["sample_s"] = time.perf_counter() - t
    t = time.perf_counter()
    runs = {}
    for part in ("trainval", "ood"):
        runs[part] = label(work / f"geoms_{part}.hstore", engine, work / f"labelled_{part}.hstore",
                           workers=workers).record()
    times["label_s"] = time.perf_counter() - t
    t = time.perf_counter()
    kept_test = write_test_reactions(test_c, n_test, engine, out / "test_reactions")
    times["test_reactions_s"] = time.perf_counter() - t
    counts = {}
    common = dict(source="Transition1x validation reactions (ReactBench ts1x set)", seed=seed)
    with HessianStore.open(work / "geoms_trainval.hstore") as g:
        sfail = g.failures()
    with HessianStore.open(work / "labelled_trainval.hstore") as lab:
        rxns = sorted(f.stem for f in trainval)
        is_val = reaction_split(rxns, val_fraction=val_fraction, seed=seed)
        val = {r for r, v in zip(rxns, is_val) if v}
        for split, keep in (("train", set(rxns) - val), ("val", val)):
            counts[split] = write_split(out / f"{split}.hstore", lab, keep, work, sfail, split=split,
                                        sampler="neb", **common)
    with HessianStore.open(work / "geoms_ood.hstore") as g:
        sfail = g.failures()
    with HessianStore.open(work / "labelled_ood.hstore") as lab:
        counts["ood"] = write_split(out / "ood.hstore", lab, {f.stem for f in ood}, work, sfail, split="ood",
                                    sampler="irc", **common)
    counts["test_reactions"] = {"reactions": len(kept_test), "names": kept_test}
    times["total_s"] = time.perf_counter() - t_start
    manifest = {"counts": counts, "seconds": {k: round(v, 1) for k, v in times.items()}, "label_runs": runs,
                "engine": {"name": engine.name, "level_of_theory": engine.level_of_theory,
                           "settings": dict(engine.settings)},
                "neb_settings": vars(neb), "irc_settings": vars(irc), "workers": workers, "seed": seed,
                "reactions": {"trainval": [f.stem for f in trainval], "ood": [f.stem for f in ood]}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str) + "\n")
    return manifest


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reactions", type=Path, default=DEFAULT_REACTIONS)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-test", type=int, default=8)
    ap.add_argument("--n-trainval", type=int, default=60)
    ap.add_argument("--n-ood", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    m = build(a.reactions, a.out, a.work, a.seed, a.n_test, a.n_trainval, a.n_ood, a.workers)
    print(json.dumps({"counts": m["counts"], "seconds": m["seconds"]}, indent=1))


if __name__ == "__main__":
    main()
