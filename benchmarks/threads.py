"""Old thread defaults (torch and OpenMP use every core) vs horm's (one thread below 50 atoms), in one run.

    python benchmarks/threads.py [--repeat 5] [--xtb-samples 4]

Two workloads, each timed alternately under both settings so that load from other processes
hits both alike:

1. the calculator's Hessian (and energy + forces) for a 15-atom molecule with a tiny
   ``leftnet`` in float64, i.e. ``HormCalculator.get_hessian`` as Sella calls it;
2. GFN2-xTB labelling (energy, forces, finite-difference Hessian) of bundled ``t1x_xtb``
   geometries through the labelling runner's ``compute_one``, as ``horm label`` does.

"old" is ``threads=<cores>``: torch's default intra-op count and the OpenMP default when
``OMP_NUM_THREADS`` is unset (the variable is removed before anything is imported). "new" is
the default, ``threads=None``: one thread for molecules under 50 atoms. Printed: median
seconds per call (or samples/s) for both and the ratio old/new (> 1: the new default is faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.pop("OMP_NUM_THREADS", None)  # the old default: OpenMP picks every core

import numpy as np  # noqa: E402


def fifteen_atoms():
    """A 15-atom C/H/N/O molecule: the bundled 12-atom geometry plus three H in a seeded shell."""
    from ase import Atoms

    from horm.datasets import load_bundled

    s = next(x for x in load_bundled("val") if len(x.numbers) == 12)
    rng = np.random.default_rng(0)
    centre = s.pos.mean(0)
    pos, numbers = [p for p in s.pos], list(s.numbers)
    while len(pos) < 15:
        cand = centre + rng.normal(size=3) * 2.5
        if min(np.linalg.norm(cand - p) for p in pos) > 1.4:
            pos.append(cand)
            numbers.append(1)
    return Atoms(numbers=numbers, positions=np.array(pos))


def time_calculator(calc, atoms, kind: str) -> float:
    a = atoms.copy()
    a.positions += np.random.default_rng().normal(scale=1e-3, size=a.positions.shape)  # no cache hit
    t = time.perf_counter()
    if kind == "hessian":
        calc.get_hessian(a)
    else:
        calc.get_forces(a)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="timed calls per setting (calculator)")
    ap.add_argument("--xtb-samples", type=int, default=4, help="geometries labelled per setting (xTB)")
    args = ap.parse_args()

    import torch

    from horm.datasets import load_bundled
    from horm.label import get_engine
    from horm.label.runner import compute_one
    from horm.models.registry import build_model
    from horm.runtime import cpu_count
    from horm.calculators.potential import HormCalculator

    cores = cpu_count()
    settings = {"old": cores, "new": None}
    print(f"cores {cores}; torch default threads {torch.get_num_threads()}; "
          f"old = {cores} threads everywhere, new = horm default (1 below 50 atoms)")

    torch.manual_seed(0)
    model = build_model("leftnet", "tiny").double()
    model.set_atom_ref({1: -13.6, 6: -1030.0, 7: -1480.0, 8: -2040.0})
    atoms = fifteen_atoms()
    calcs = {k: HormCalculator(model, threads=v) for k, v in settings.items()}
    rows = []
    for kind in ("energy+forces", "hessian"):
        times = {k: [] for k in settings}
        for k in settings:  # warm-up (first-call allocations)
            time_calculator(calcs[k], atoms, kind)
        for r in range(args.repeat):
            for k in (("old", "new") if r % 2 == 0 else ("new", "old")):
                times[k].append(time_calculator(calcs[k], atoms, kind))
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append((f"calculator {kind}, 15 atoms (s/call)", med["old"], med["new"], med["old"] / med["new"]))

    engine = get_engine("xtb")
    samples = [s for s in load_bundled("val")][: args.xtb_samples]
    for s in samples:
        s.energy = s.forces = s.hessian = None
    spent = {k: 0.0 for k in settings}
    compute_one(engine, samples[0], threads=1)  # warm-up: tblite's first call
    for i, s in enumerate(samples):
        for k in (("old", "new") if i % 2 == 0 else ("new", "old")):
            res = compute_one(engine, s, threads=settings[k])
            if res.sample is None:
                raise SystemExit(f"xtb failed on {s.key}: {res.reason}")
            spent[k] += res.seconds
    n_atoms = sorted({len(s.numbers) for s in samples})
    rate = {k: len(samples) / v for k, v in spent.items()}
    rows.append((f"xTB labelling, {n_atoms} atoms (samples/s)", rate["old"], rate["new"], rate["new"] / rate["old"]))

    print(f"{'workload':46s} {'old':>10s} {'new':>10s} {'old/new time':>13s}")
    for name, old, new, ratio in rows:
        print(f"{name:46s} {old:10.4g} {new:10.4g} {ratio:12.2f}x")


if __name__ == "__main__":
    main()
