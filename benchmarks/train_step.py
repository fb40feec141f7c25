"""E-F-H training-step time over E-F step time, for N_HR = 1 and 2, autograd and direct forces.

One optimizer step = forward, loss (:func:`horm.train.losses.compute_loss`), backward, AdamW
step, on the same batch of real HORM molecules (8–21 atoms). All variants are timed
round-robin in one run (so a busy machine slows them alike), and the median over repeats
is reported as a ratio to the E-F step of the same model.

Expected floor for autograd models: an E-F step already holds one double backward (forces
via create_graph, then the loss backward through them); each sampled row adds one more VJP
of the forces and its backward, so N_HR = 1 should cost roughly 2× an E-F step.

    python benchmarks/train_step.py [--preset tiny|horm] [--batch 16] [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from horm.data.batch import collate
from horm.data.horm_lmdb import HormLmdb
from horm.models.registry import build_model
from horm.train.losses import compute_loss, ef_loss, efh_loss

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "horm_sample_100.lmdb"


def step_fn(model, opt, batch, spec):
    def step():
        opt.zero_grad(set_to_none=True)
        out = compute_loss(model, batch, spec, training=True)
        out.total.backward()
        opt.step()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED))
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--row-vjp", default="auto", choices=("auto", "vmap", "loop"),
                    help="how the N_HR row VJPs run (auto: loop on CPU, vmap on GPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with HormLmdb(args.data) as ds:
        samples = [ds[i] for i in range(args.batch)]
    batch = collate(samples).to(args.device)
    natoms = batch.natoms.float()
    print(f"batch: {batch.num_graphs} molecules, {int(natoms.min())}-{int(natoms.max())} atoms "
          f"(mean {natoms.mean():.1f}); preset {args.preset}; device {args.device}; threads {args.threads}; "
          f"row VJPs {args.row_vjp}")
    variants = {}
    for name in ("leftnet", "leftnet-df"):
        torch.manual_seed(0)
        model = build_model(name, args.preset).to(args.device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        for label, spec in (("E-F", ef_loss()), ("E-F-H N_HR=1", efh_loss(n_hr=1)), ("E-F-H N_HR=2", efh_loss(n_hr=2))):
            spec.row_vjp = args.row_vjp
            variants[(name, label)] = step_fn(model, opt, batch, spec)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for f in variants.values():  # warm-up (vmap set-up, allocator)
        f(), f()
    times = {k: [] for k in variants}
    for _ in range(args.repeats):
        for k, f in variants.items():
            sync()
            t0 = time.perf_counter()
            f()
            sync()
            times[k].append(time.perf_counter() - t0)
    print(f"{'model':<12}{'loss':<15}{'step (ms)':>10}{'÷ E-F':>8}")
    for name in ("leftnet", "leftnet-df"):
        base = statistics.median(times[(name, "E-F")])
        for label in ("E-F", "E-F-H N_HR=1", "E-F-H N_HR=2"):
            t = statistics.median(times[(name, label)])
            print(f"{name:<12}{label:<15}{1e3 * t:>10.1f}{t / base:>8.2f}")


if __name__ == "__main__":
    main()
