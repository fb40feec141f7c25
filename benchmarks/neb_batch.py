"""NEB band of a torch model: one batched call per band update against one call per image.

Runs ``find_path`` (geodesic band, CI-NEB, ODE optimiser) on the first ``--n`` reactions of
the shipped TS-evaluation set with a ``small`` leftnet (a shipped model if given), once with
``HormCalculator.prefetch`` (the default) and once with batching switched off, side by side,
1 thread, CPU seconds (``time.process_time``: a busy machine does not inflate them); prints
the per-reaction ratio and checks that both bands end with the same energies.

    python benchmarks/neb_batch.py [--n 4] [--model t1x-xtb-leftnet-efh] [--dtype float32]
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
from horm.data.xyz import read_reaction  # noqa: E402
from horm.datasets import bundled_path  # noqa: E402
from horm.models.registry import build_model  # noqa: E402
from horm.calculators.potential import HormCalculator  # noqa: E402
from horm.ts.path import PathSettings, find_path  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--model", default=None, help="a model file or shipped name (default: an untrained small leftnet)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--max-steps", type=int, default=100)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.model:
        from horm.models.files import load_model

        model, _ = load_model(a.model, dtype=a.dtype)
    else:
        torch.manual_seed(0)
        model = build_model("leftnet", "small")
    s = PathSettings(max_steps=a.max_steps)
    rxns = sorted((bundled_path("t1x_xtb_large") / "ts_reactions").glob("*.xyz"))[: a.n]
    print(f"{'reaction':10s} {'atoms':>5s} {'calls':>6s} {'batched s':>10s} {'per image s':>12s} {'ratio':>6s} "
          f"{'max |dE| eV':>11s}")
    ratios = []
    for rxn in rxns:
        r, p = read_reaction(rxn)
        out = {}
        for mode in ("batched", "per image"):
            calc = HormCalculator(model, check_domain=False, dtype=a.dtype)
            if mode == "per image":
                calc.evaluate_many = lambda atoms_list: None
            t, res = timed(lambda c=calc: find_path(r.to_atoms(), p.to_atoms(), c, s), 1, clock=time.process_time)
            out[mode] = (t, res, calc.counts["energy_forces"])
        (tb, rb, nb), (tu, ru, _) = out["batched"], out["per image"]
        de = float(np.max(np.abs(np.asarray(rb.energies) - np.asarray(ru.energies))))
        ratios.append(tu / tb)
        print(f"{rxn.stem:10s} {len(r.numbers):5d} {nb:6d} {tb:10.2f} {tu:12.2f} {tu / tb:6.2f} {de:11.2e}")
    print(f"median ratio (per image / batched): {np.median(ratios):.2f}")


if __name__ == "__main__":
    main()
