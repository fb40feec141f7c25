"""Full-Hessian time per molecule: (a) row loop, (b) vmap per molecule, (c) batched one-hots.

Usage: python benchmarks/hessian_speed.py [--model leftnet] [--preset tiny horm] [--batch 32]
       [--natoms 15] [--dtype float32] [--chunk N] [--threads 1] [--repeat 2]

- (a) one molecule at a time: forward, then one ``autograd.grad`` per row of the 3n rows
  (what HORM's evaluation does);
- (b) one molecule at a time: forward, then all 3n one-hot VJPs under vmap;
- (c) the whole batch at once: one forward, then 3·n_max vmapped VJPs whose one-hots select
  row k of every molecule together.

Every time includes the forward pass. Geometries: the B molecules of
../shared/data/horm_sample_100.lmdb whose atom count is closest to ``--natoms`` (8–21 atoms
in that file), else T1x reactants from ../shared/data/t1x_val_reactions. Prints time per
molecule, the ratios and the largest absolute difference between the three results.
"""

from __future__ import annotations

import argparse
import resource
from pathlib import Path

import numpy as np
import torch

from _timing import timed  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from horm.data.batch import collate, hessian_blocks
from horm.models.registry import build_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_molecules(n: int, natoms: int):
    lmdb_path = SHARED / "horm_sample_100.lmdb"
    if lmdb_path.exists():
        from horm.data.horm_lmdb import HormLmdb

        pool, src = list(HormLmdb(lmdb_path)), lmdb_path.name
    else:
        from horm.data.xyz import read_reaction

        pool = [read_reaction(p)[0] for p in sorted((SHARED / "t1x_val_reactions").glob("*.xyz"))[:400]]
        src = "t1x_val_reactions"
    pool.sort(key=lambda s: (abs(s.natoms - natoms), s.key))
    return pool[:n], src


def hessians_per_molecule(model, samples, dtype, method: str, chunk: int | None) -> list[torch.Tensor]:
    out = []
    for s in samples:
        b = collate([s], dtype=dtype)
        res = model(b, compute_hessian=True, hessian_method=method, chunk_size=chunk, create_graph=False)
        out += hessian_blocks(res["hessian"], b.hess_ptr, b.natoms)
    return out


def hessians_batched(model, samples, dtype, chunk: int | None) -> list[torch.Tensor]:
    b = collate(samples, dtype=dtype)
    res = model(b, compute_hessian=True, hessian_method="batched", chunk_size=chunk, create_graph=False)
    return hessian_blocks(res["hessian"], b.hess_ptr, b.natoms)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="leftnet")
    ap.add_argument("--preset", nargs="+", default=["tiny", "horm"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--natoms", type=int, default=15)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--chunk", type=int, default=None,
                    help="VJPs per vmapped call; default: from the memory budget ($HORM_HESSIAN_MEMORY_GB)")
    ap.add_argument("--loop-molecules", type=int, default=8, help="molecules timed for path (a), the slow one")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    samples, src = load_molecules(args.batch, args.natoms)
    sizes = [s.natoms for s in samples]
    print(f"{len(samples)} molecules from {src}: {min(sizes)}–{max(sizes)} atoms (mean {np.mean(sizes):.1f}); "
          f"{args.dtype}, {torch.get_num_threads()} thread(s), chunk {args.chunk or 'auto'}")
    for preset in args.preset:
        torch.manual_seed(0)
        model = build_model(args.model, preset).to(dtype).eval()
        n_par = sum(p.numel() for p in model.parameters())
        sub = samples[: args.loop_molecules]
        hessians_batched(model, samples[:2], dtype, args.chunk)  # warm-up (vmap tracing, allocator)
        ta, ha = timed(lambda: hessians_per_molecule(model, sub, dtype, "loop", args.chunk), args.repeat)
        tb, hb = timed(lambda: hessians_per_molecule(model, samples, dtype, "vmap", args.chunk), args.repeat)
        tc, hc = timed(lambda: hessians_batched(model, samples, dtype, args.chunk), args.repeat)
        pa, pb, pc = ta / len(sub), tb / len(samples), tc / len(samples)
        d_ab = max(float((x - y).abs().max()) for x, y in zip(ha, hb))
        d_ac = max(float((x - y).abs().max()) for x, y in zip(ha, hc))
        scale = max(float(h.abs().max()) for h in hc)
        print(f"\n{args.model}/{preset} ({n_par / 1e6:.2f} M parameters)")
        print(f"  (a) row loop, per molecule      {pa * 1e3:9.1f} ms   (timed on {len(sub)} molecules)")
        print(f"  (b) vmap, per molecule          {pb * 1e3:9.1f} ms   {pa / pb:6.1f}x vs (a)")
        print(f"  (c) batched, {len(samples)} at once        {pc * 1e3:9.1f} ms   {pa / pc:6.1f}x vs (a), "
              f"{pb / pc:.1f}x vs (b)")
        print(f"  max |H_a - H_b| = {d_ab:.2e}, max |H_a - H_c| = {d_ac:.2e} eV/Å² (max |H| = {scale:.2f})")
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
