"""Training-step time of candidate model sizes (for picking the ``small`` preset), side by side.

One E-F-H optimizer step (forward, loss with N_HR rows or the full head Hessian, backward,
AdamW) on the same batch of the bundled xTB training split, 1 torch thread, round-robin over
the candidates, median of ``--repeats``. Prints wall seconds per step, CPU seconds per step
(what the step costs on an idle core: on a shared, loaded machine wall ≫ CPU), the ratio to
``tiny`` and the steps that fit in ``--budget-h`` hours at the wall rate (1 thread; the data
loader and validation come on top).

    python benchmarks/preset_step.py [--batch 8] [--repeats 3] [--budget-h 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from horm.data.batch import collate
from horm.datasets import load_bundled
from horm.models.registry import build_model
from horm.train.losses import LossSpec, LossTerm, compute_loss, efh_loss

CANDIDATES = {  # name -> (model, preset, overrides); "small" is the preset as registered
    "tiny": ("leftnet", "tiny", {}),
    "L3-H64-R32": ("leftnet", "tiny", dict(num_layers=3, hidden_channels=64, num_radial=32)),
    "L4-H96-R32": ("leftnet", "tiny", dict(num_layers=4, hidden_channels=96, num_radial=32)),
    "small": ("leftnet", "small", {}),
    "L5-H160-R32": ("leftnet", "tiny", dict(num_layers=5, hidden_channels=160, num_radial=32)),
    "df small": ("leftnet-df", "small", {}),
    "head tiny": ("hessian_head", "tiny", {}),
    "head small": ("hessian_head", "small", {}),
}


def spec_for(model) -> LossSpec:
    if getattr(model, "hessian_mode", "autograd") == "direct":  # full head Hessian, no VJPs
        return LossSpec((LossTerm("energy", "l1", 4.0), LossTerm("forces", "l1", 100.0),
                         LossTerm("hessian", "l1", 4.0)))
    return efh_loss(n_hr=2 if model.forces_mode == "direct" else 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget-h", type=float, default=2.0)
    ap.add_argument("--only", nargs="*", default=None, help="candidate names to time")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ds = load_bundled("train")
    batch = collate([ds[i * 37 % len(ds)] for i in range(args.batch)])
    print(f"batch {batch.num_graphs} molecules, {int(batch.natoms.min())}-{int(batch.natoms.max())} atoms; 1 thread")
    runs = {}
    for name, (m, preset, over) in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        torch.manual_seed(0)
        model = build_model(m, preset, **over)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        runs[name] = (model, opt, spec_for(model), [], [])
    for _ in range(args.repeats + 1):  # first round is warm-up
        for name, (model, opt, spec, times, cpu) in runs.items():
            t, c = time.perf_counter(), time.process_time()
            opt.zero_grad(set_to_none=True)
            compute_loss(model, batch, spec, training=True).total.backward()
            opt.step()
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    base = statistics.median(runs["tiny"][3][1:]) if "tiny" in runs else None
    print(f"{'candidate':14s} {'params':>9s} {'s/step':>8s} {'cpu s':>7s} {'x tiny':>7s} "
          f"{'steps/' + str(args.budget_h) + 'h':>10s}")
    for name, (model, _, _, times, cpu) in runs.items():
        med = statistics.median(times[1:])
        n = sum(p.numel() for p in model.parameters())
        ratio = f"{med / base:7.1f}" if base else "      -"
        print(f"{name:14s} {n:9d} {med:8.3f} {statistics.median(cpu[1:]):7.3f} {ratio} "
              f"{int(args.budget_h * 3600 / med):10d}")


if __name__ == "__main__":
    main()
