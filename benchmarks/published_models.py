"""The published architectures at full size: ms per molecule for energy+forces and full Hessians.

Usage: python benchmarks/published_models.py [--models horm-leftnet ...] [--molecules 0 1 2 3]
       [--hessian-molecules 0 1] [--dtype float32] [--threads 1] [--repeat 1] [--clock cpu|wall]
       [--preset published|small]

For every registered published model (``horm-*``, ``hip-*``) built at its ``published``
preset with seeded random weights (timings do not depend on the weights), on the molecules
of the reference fixtures (``../shared/reference/horm_models/*/small/reference.npz``: 8, 12,
16, 21 atoms), in one run:

- ``E+F``: one molecule per call, ``model(batch, compute_forces=True)``, on ``--molecules``;
- on ``--hessian-molecules`` (default the 8- and 12-atom ones: the row loop is slow):
  - ``loop`` (the 1× baseline): HORM eval.py's ``compute_hessian``: forward with the force
    graph, then one ``autograd.grad(-F_k, pos, retain_graph=True)`` per force entry, one
    molecule at a time;
  - ``batched, 1/call``: ``horm.hessian.autograd``'s batched path (vmapped VJPs) through
    ``model(batch, compute_hessian=True)``, one molecule per call (what the TS search does);
  - ``batched, all``: the same with all those molecules in one call (what evaluation does);
  - ``head``: HIP's direct Hessian head (models that have one; no VJPs).

Every Hessian time includes the forward pass. Times are per molecule, best of ``--repeat``
after one untimed warm-up call per model. ``--clock cpu`` (default) measures this process's
CPU time, which other jobs on a shared machine do not inflate; at ``--threads 1`` it equals
wall time on an idle core. Also printed: max|H_batched − H_loop| / max|H_loop|.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import timed  # noqa: E402
from horm.data.batch import collate, hessian_blocks  # noqa: E402
from horm.data.sample import Sample  # noqa: E402
from horm.models.registry import list_models  # noqa: E402
from horm.models.registry import build_model

REF = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "horm_models"
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def reference_molecules() -> list[Sample]:
    for npz in sorted(REF.glob("*/small/reference.npz")):
        ref = np.load(npz, allow_pickle=False)
        return [Sample(numbers=ref[f"mol{k}_z"], pos=ref[f"mol{k}_pos"].astype(np.float64)) for k in range(4)]
    raise SystemExit(f"no reference.npz under {REF} (../shared/reference is needed)")


def published_models() -> list[str]:
    return [m for m in list_models() if m.startswith(("horm-", "hip-"))]


def loop_hessian(model, sample: Sample, dtype) -> torch.Tensor:
    """HORM eval.py's compute_hessian: one autograd.grad per force entry."""
    out = model(collate([sample], dtype=dtype), compute_forces=True, create_graph=True)
    pos, forces = out["pos"], out["forces"].reshape(-1)
    rows = [torch.autograd.grad(-f, pos, retain_graph=True)[0].reshape(-1) for f in forces]
    return torch.stack(rows).detach()


def model_hessians(model, samples, dtype, source: str = "autograd", **kw) -> list[torch.Tensor]:
    """Hessians through the model; ``source`` "head" for HIP's head, else autograd (its ``hessian_from``)."""
    if hasattr(model, "hessian_from"):
        model.hessian_from = source
    b = collate(samples, dtype=dtype)
    out = model(b, compute_hessian=True, create_graph=False, **kw)
    return hessian_blocks(out["hessian"], out["hess_ptr"], b.natoms)


def bench_model(name: str, ef_samples, h_samples, dtype, repeat, clock, preset: str = "published") -> dict:
    torch.manual_seed(0)
    model = build_model(name, preset).to(dtype).eval()
    row = {"model": name, "params": sum(p.numel() for p in model.parameters())}

    def per_mol(fn, samples):
        return 1e3 * sum(timed(lambda s=s: fn(s), repeat, clock)[0] for s in samples) / len(samples)

    model(collate(ef_samples[:1], dtype=dtype), compute_hessian=bool(h_samples), create_graph=False)  # warm-up
    row["ef"] = per_mol(lambda s: model(collate([s], dtype=dtype), create_graph=False), ef_samples)
    if h_samples:
        row["loop"] = per_mol(lambda s: loop_hessian(model, s, dtype), h_samples)
        row["b1"] = per_mol(lambda s: model_hessians(model, [s], dtype, hessian_method="batched"), h_samples)
        t_all, h_b = timed(lambda: model_hessians(model, h_samples, dtype, hessian_method="batched"), repeat, clock)
        row["ball"] = 1e3 * t_all / len(h_samples)
        h_loop = [loop_hessian(model, s, dtype) for s in h_samples]
        row["dev"] = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(h_b, h_loop))
        if hasattr(model, "hessian_from"):  # HIP: the direct head
            row["head"] = per_mol(lambda s: model_hessians(model, [s], dtype, "head"), h_samples)
    return row


def _cell(base, t) -> str:
    return "—" if t is None else (f"{t:.0f} ({base / t:.1f}×)" if base else f"{t:.0f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=None, help="default: every registered horm-*/hip-* model")
    ap.add_argument("--molecules", nargs="*", type=int, default=[0, 1, 2, 3], help="E+F molecules (0-3)")
    ap.add_argument("--hessian-molecules", nargs="*", type=int, default=[0, 1], help="Hessian molecules (0-3)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--clock", default="cpu", choices=list(CLOCKS))
    ap.add_argument("--preset", default="published", help="'small' is the fixtures' size")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype, clock = getattr(torch, args.dtype), CLOCKS[args.clock]
    mols = reference_molecules()
    ef_s, h_s = [mols[i] for i in args.molecules], [mols[i] for i in args.hessian_molecules]
    names = args.models if args.models is not None else published_models()
    print(f"preset {args.preset}, random weights; {args.dtype}, {args.threads} thread(s), {args.clock} time, best of "
          f"{args.repeat}; E+F on {[s.natoms for s in ef_s]} atoms, Hessians on {[s.natoms for s in h_s]} atoms")
    print("| model | params | E+F ms/mol | Hessian ms/mol: loop (1×) | batched, 1/call | batched, all in one call "
          "| head | max rel. dev. batched vs loop |")
    print("|" + "---|" * 8)
    for name in names:
        r = bench_model(name, ef_s, h_s, dtype, args.repeat, clock, args.preset)
        loop = r.get("loop")
        dev = f"{r['dev']:.1e}" if "dev" in r else "—"
        print(f"| {name} | {r['params'] / 1e6:.2f} M | {r['ef']:.1f} | {_cell(None, loop)} | {_cell(loop, r.get('b1'))} "
              f"| {_cell(loop, r.get('ball'))} | {_cell(loop, r.get('head'))} | {dev} |", flush=True)


if __name__ == "__main__":
    main()
