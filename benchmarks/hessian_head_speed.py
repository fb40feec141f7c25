"""Direct Hessian head against autograd on the same backbone: time and peak memory per molecule.

Usage: python benchmarks/hessian_head_speed.py [--backbone leftnet] [--preset tiny horm] [--batch 32]
       [--natoms 15] [--dtype float32] [--threads 1] [--repeat 3]

For each preset, ``hessian_head`` is built on the backbone and its backbone gets the very
weights of the plain backbone, so energy and forces are identical; only the Hessian differs:

- autograd: ``backbone(batch, compute_hessian=True, hessian_method="batched")`` (the fastest
  autograd path in :mod:`horm.hessian.autograd`: 3·n_max vmapped VJPs for the whole batch);
- head: ``hessian_head(batch, compute_hessian=True)`` (one forward, forces by one backward,
  the Hessian from the head, no VJPs).

Both return energy, forces and Hessian, both with ``create_graph=False`` (inference). Two
settings: one molecule per call (what the TS search does) and all ``--batch`` molecules in
one call (what the evaluation does). Geometries: the molecules of the shared HORM sample
closest to ``--natoms`` atoms (see benchmarks/hessian_speed.py).

Memory: the peak of the bytes allocated by torch's CPU allocator during one call, above
what was allocated before it (torch profiler with ``profile_memory=True``, allocation events
in time order; tracemalloc does not see torch's allocations). Tensors that exist before the
call (weights, inputs) are not counted. Timing runs without the profiler (best of --repeat).
The profiler keeps every event in RAM: on the "horm" preset (6 × 196, 10 Å full graph) the
autograd Hessian of 8 molecules ran a 23 GB machine out of memory; use ``--no-memory`` there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from horm.data.batch import collate
from horm.models.registry import build_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import timed  # noqa: E402
from hessian_speed import load_molecules  # noqa: E402  (same geometries as the autograd benchmark)


def peak_bytes(fn) -> int:
    """Peak bytes allocated (above the start) by torch on CPU while ``fn()`` runs."""
    from torch._C._profiler import _EventType  # private, but the only per-allocation record on CPU

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    sizes: list[tuple[int, int]] = []

    def walk(nodes):
        for n in nodes:
            if n.tag == _EventType.Allocation:
                sizes.append((n.start_time_ns, int(n.extra_fields.alloc_size)))
            walk(n.children)

    walk(prof.profiler.kineto_results.experimental_event_tree())
    sizes.sort()
    return int(max(np.cumsum([s for _, s in sizes]).max(initial=0), 0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="leftnet")
    ap.add_argument("--preset", nargs="+", default=["tiny", "horm"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--natoms", type=int, default=15)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-memory", action="store_true", help="skip the profiler (timings only)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    samples, src = load_molecules(args.batch, args.natoms)
    sizes = [s.natoms for s in samples]
    singles = [collate([s], dtype=dtype) for s in samples]
    whole = collate(samples, dtype=dtype)
    print(f"{len(samples)} molecules from {src}: {min(sizes)}–{max(sizes)} atoms (mean {np.mean(sizes):.1f}); "
          f"{args.dtype}, {torch.get_num_threads()} thread(s); memory = "
          + ("not measured" if args.no_memory else "peak torch CPU allocation per call (torch profiler)"))
    for preset in args.preset:
        torch.manual_seed(0)
        auto = build_model(args.backbone, preset).to(dtype).eval()
        head = build_model("hessian_head", preset, backbone=args.backbone, backbone_preset=preset).to(dtype).eval()
        head.backbone.load_state_dict(auto.state_dict())
        n_bb = sum(p.numel() for p in auto.parameters())
        n_head = sum(p.numel() for p in head.head.parameters())

        def run(model, b):
            return model(b, compute_forces=True, compute_hessian=True, create_graph=False)

        run(auto, whole), run(head, whole)  # warm-up (vmap tracing, allocator)
        f_gap = float((run(auto, whole)["forces"] - run(head, whole)["forces"]).abs().max())
        rows = []
        for label, batches in ((f"one molecule per call", singles), (f"{len(samples)} molecules per call", [whole])):
            res = {}
            for name, model in (("autograd", auto), ("head", head)):
                t = timed(lambda: [run(model, b) for b in batches], args.repeat)[0] / len(samples)
                mem = np.nan if args.no_memory else np.mean(
                    [peak_bytes(lambda b=b: run(model, b)) / b.num_graphs for b in batches])
                res[name] = (t, mem)
            rows.append((label, res))
        print(f"\n{args.backbone}/{preset}: backbone {n_bb / 1e6:.2f} M parameters, head {n_head / 1e6:.3f} M; "
              f"max |F_auto − F_head| = {f_gap:.1e} eV/Å (same backbone weights)")
        print(f"  {'setting':<26}{'autograd ms':>12}{'head ms':>10}{'speed-up':>10}"
              f"{'autograd MiB':>14}{'head MiB':>10}{'mem ratio':>11}   (per molecule)")
        for label, res in rows:
            (ta, ma), (th, mh) = res["autograd"], res["head"]
            print(f"  {label:<26}{ta * 1e3:12.2f}{th * 1e3:10.2f}{ta / th:9.1f}x"
                  f"{ma / 2**20:14.2f}{mh / 2**20:10.2f}{ma / mh:10.1f}x")


if __name__ == "__main__":
    main()
