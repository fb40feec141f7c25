"""Seconds per ωB97X/6-31G(d) Hessian: exact integrals vs density fitting, and grid choices.

Runs the ``dft`` engine on small molecules of the HORM sample (default: the 8-atom one)
with several settings side by side and prints, per molecule and setting: SCF+Hessian wall
time, Hessian MAE against the exact-integral run with the same grids (the cost of density
fitting), and energy/force/Hessian error against HORM's stored labels.

    python benchmarks/label_dft.py                      # smallest sample, all variants
    python benchmarks/label_dft.py --n-molecules 2 --variants exact-l3,df-l3

Expensive (minutes per Hessian on 2 cores): run it once, not in a loop.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from horm.data.horm_lmdb import HormLmdb
from horm.label import get_engine

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "horm_sample_100.lmdb"

# name -> (engine settings, name of the exact-integral variant it is compared with)
VARIANTS: dict[str, tuple[dict, str | None]] = {
    "exact-l3": ({"grid_level": 3, "hessian_grid_level": 3, "density_fit": False}, None),
    "df-l3": ({"grid_level": 3, "hessian_grid_level": 3, "density_fit": True}, "exact-l3"),
    "exact-l3-h5": ({"grid_level": 3, "hessian_grid_level": 5, "density_fit": False}, None),
    "df-l3-h5": ({"grid_level": 3, "hessian_grid_level": 5, "density_fit": True}, "exact-l3-h5"),
    "default": ({}, None),
}
DEFAULT_VARIANTS = "exact-l3,df-l3,exact-l3-h5,df-l3-h5"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--n-molecules", type=int, default=1, help="the n smallest HORM samples")
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--threads", type=int, default=None, help="OpenMP threads (default: all cores)")
    args = ap.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    bad = [v for v in names if v not in VARIANTS]
    if bad:
        raise SystemExit(f"unknown variant(s) {bad}; valid: {', '.join(VARIANTS)}")
    threads = args.threads or len(os.sched_getaffinity(0))

    with HormLmdb(args.data) as ds:
        samples = sorted((ds[i] for i in range(len(ds))), key=lambda s: s.natoms)[: args.n_molecules]
    print(f"{len(samples)} molecule(s) from {args.data.name}, {threads} threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    header = (f"{'molecule':<14}{'variant':<13}{'wall s':>8}{'CPU s':>8}{'vs exact MAE':>14}"
              f"{'dE meV':>9}{'F MAE meV/Å':>13}{'H MAE':>9}{'H max':>8}  (H in eV/Å², vs HORM)")
    print(header)
    print("-" * len(header))
    for s in samples:
        ref = s
        bare = s.copy(energy=None, forces=None, hessian=None)
        label = f"{s.formula}({s.natoms})"
        done: dict[str, np.ndarray] = {}
        for name in names:
            settings, base = VARIANTS[name]
            eng = get_engine("dft", threads=threads, **settings)
            t0, c0 = time.perf_counter(), time.process_time()
            out = eng.compute(bare)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            done[name] = out.hessian
            vs = f"{np.abs(out.hessian - done[base]).mean():.5f}" if base in done else "-"
            err = np.abs(out.hessian - ref.hessian)
            print(f"{label:<14}{name:<13}{dt:>8.0f}{cpu:>8.0f}{vs:>14}{(out.energy - ref.energy) * 1e3:>+9.2f}"
                  f"{np.abs(out.forces - ref.forces).mean() * 1e3:>13.2f}{err.mean():>9.4f}{err.max():>8.3f}",
                  flush=True)
    print(f"wall/CPU s: SCF + forces + Hessian; load average now {os.getloadavg()[0]:.1f}")
    print("default engine:", get_engine("dft").level_of_theory)


if __name__ == "__main__":
    main()
