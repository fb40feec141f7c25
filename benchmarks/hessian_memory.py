"""Memory a long run of model Hessians keeps: the automatic chunk size (which meters the
saved tensors of the forward pass) against a fixed chunk, side by side in one process.

    python benchmarks/hessian_memory.py [--n 80] [--model leftnet] [--preset tiny]

An untrained model (float64, 1 thread) computes ``--n`` full Hessians, one geometry at a
time, cycling over molecules of the shipped ``t1x_xtb_large`` test split, first with
``chunk_size=None`` (``SavedTensorMeter`` + ``auto_chunk``), then with a fixed chunk of 8.
glibc's mmap threshold is pinned (MALLOC_MMAP_THRESHOLD_, set by re-executing) so that large
temporaries do not hide in heap holes: what the heap keeps growing by is memory still
referenced. Prints the heap (RSS of ``[heap]``) growth every ``--n // 4`` Hessians. A graph
that is freed shows a flat line; a leak grows with the count (before the fix of
``SavedTensorMeter``: about 5 MB per Hessian of a tiny LEFTNet on ~15 atoms).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

import torch

from horm.data.batch import collate
from horm.data.store import HessianStore
from horm.datasets import bundled_split_path
from horm.errors import UsageError
from horm.evaluate.metrics import sample_indices
from horm.models.registry import build_model

THRESHOLD = "131072"


def heap_mb() -> float:
    """Resident kB of this process's [heap] mapping, in MB (Linux)."""
    total, current = 0, None
    with open("/proc/self/smaps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and "-" in parts[0] and len(parts[1]) == 4:
                current = parts[5] if len(parts) > 5 else None
            elif parts and parts[0] == "Rss:" and current == "[heap]":
                total += int(parts[1])
    return total / 1024


def run(model, samples, n: int, chunk: int | None) -> list[float]:
    base, marks = heap_mb(), []
    for i in range(n):
        batch = collate([samples[i % len(samples)]], dtype=torch.float64)
        with torch.enable_grad():
            model(batch, compute_forces=True, compute_hessian=True, create_graph=False, chunk_size=chunk)
        if (i + 1) % max(1, n // 4) == 0:
            gc.collect()
            marks.append(heap_mb() - base)
    return marks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=80)
    ap.add_argument("--model", default="leftnet")
    ap.add_argument("--preset", default="tiny")
    args = ap.parse_args()
    if args.n < 4:
        ap.error(f"--n must be at least 4 (one heap reading per quarter), got {args.n}")
    if not os.path.exists("/proc/self/smaps"):
        raise SystemExit("needs Linux (/proc/self/smaps)")
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") != THRESHOLD:
        os.execve(sys.executable, [sys.executable, *sys.argv], dict(os.environ, MALLOC_MMAP_THRESHOLD_=THRESHOLD))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    try:
        model = build_model(args.model, args.preset).double().eval()
    except UsageError as e:
        ap.error(str(e))
    with HessianStore.open(bundled_split_path("test", "t1x_xtb_large")) as st:
        samples = [st[i] for i in sample_indices(len(st), 40, spread=True)]
    sizes = sorted(len(s.numbers) for s in samples)
    print(f"{args.model} {args.preset}, float64, 1 thread; {args.n} Hessians over {len(samples)} molecules "
          f"({sizes[0]}-{sizes[-1]} atoms); heap growth in MB after each quarter")
    for label, chunk in (("automatic chunk (metered)", None), ("fixed chunk 8", 8)):
        marks = run(model, samples, args.n, chunk)
        print(f"{label:>26}: " + "  ".join(f"{m:+7.0f}" for m in marks))


if __name__ == "__main__":
    main()
