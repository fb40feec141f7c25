"""Read rate and size: published HORM LMDB vs horm's store, side by side, same samples.

Usage: python benchmarks/store_io.py [HORM_LMDB] [--repeat R]

Both readers decode every sample completely (positions, energy, forces, full (3N,3N)
float32 Hessian). The HORM file is read with horm's allow-list unpickler (the only safe
way; the original code's plain pickle.loads also needs torch_geometric). Sizes are file
bytes per sample (LMDB pages included), our store after a compacting copy.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from _timing import timed
from horm.data.convert import convert
from horm.data.horm_lmdb import HormLmdb, record_to_sample, safe_loads
from horm.data.store import HessianStore

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "horm_sample_100.lmdb"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("horm_lmdb", nargs="?", default=str(DEFAULT))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    src = Path(args.horm_lmdb)
    horm = HormLmdb(src)
    n = len(horm)
    with tempfile.TemporaryDirectory() as d:
        store = convert(src, Path(d) / "s.hstore", show_progress=False)
        store.compact(Path(d) / "c.hstore")
        store.close()
        ours = HessianStore.open(Path(d) / "c.hstore")
        rng = np.random.default_rng(0)
        order = rng.permutation(n)

        def horm_seq():
            for i in range(n):
                s = record_to_sample(safe_loads(horm.raw(i), str(src), str(i)), str(src), str(i))
                assert s.hessian.shape[0] == 3 * s.natoms

        def horm_rand():
            for i in order:
                horm[int(i)].hessian.sum()

        def ours_seq():
            for s in ours:
                assert s.hessian.shape[0] == 3 * s.natoms

        def ours_rand():
            for i in order:
                ours[int(i)].hessian.sum()

        t_hs, t_hr = timed(horm_seq, args.repeat)[0], timed(horm_rand, args.repeat)[0]
        t_os, t_or = timed(ours_seq, args.repeat)[0], timed(ours_rand, args.repeat)[0]
        b_h = src.stat().st_size / n
        b_o = (Path(d) / "c.hstore").stat().st_size / n
        ours.close()
    print(f"{n} samples from {src.name} (full Hessians decoded, best of {args.repeat})")
    print(f"{'':22s}{'HORM LMDB':>14s}{'horm store':>14s}{'ratio':>10s}")
    print(f"{'sequential (samples/s)':22s}{n / t_hs:14.0f}{n / t_os:14.0f}{t_hs / t_os:9.2f}x")
    print(f"{'random (samples/s)':22s}{n / t_hr:14.0f}{n / t_or:14.0f}{t_hr / t_or:9.2f}x")
    print(f"{'bytes per sample':22s}{b_h:14.0f}{b_o:14.0f}{b_o / b_h:9.2f}x")


if __name__ == "__main__":
    main()
