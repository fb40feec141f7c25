"""Does a potential keep the reaction's endpoints? Relax every reactant and product with it.

A TS search can only be ``intended`` when the potential has minima with the reactant's and
the product's bond graphs: an IRC end relaxes into the model's own minimum, and
:func:`horm.ts.verify.same_species` compares it with the input R and P. This relaxes each
endpoint of a reaction set with each potential (ASE LBFGS, ``--fmax``, the TS workflow's
``relax``) and counts the endpoints whose bond graph survives, side by side:

    python benchmarks/endpoint_stability.py REACTIONS_DIR -p xtb -p t1x-xtb-leftnet-efh [--dtype float32]

A potential that loses the reactant of many reactions shows up as ``R-unintended`` outcomes
in ``horm ts benchmark`` however good its saddles are.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def stability(reactions: list[Path], potential: str, fmax: float, max_steps: int, dtype: str) -> dict:
    from horm.data.xyz import read_reaction
    from horm.calculators.potential import load_potential
    from horm.ts.irc import relax
    from horm.ts.verify import same_species

    calc = load_potential(potential, dtype=None if potential in ("xtb", "dft") else dtype, threads=1)
    kept = {"reactant": 0, "product": 0, "both": 0}
    lost: list[str] = []
    t0 = time.perf_counter()
    for rxn in reactions:
        r, p = read_reaction(rxn)
        ok = {}
        for side, s in (("reactant", r), ("product", p)):
            end, _, _ = relax(s.to_atoms(), calc, fmax, max_steps)
            ok[side] = same_species(s.numbers, s.pos, end.positions)
            kept[side] += ok[side]
        kept["both"] += ok["reactant"] and ok["product"]
        lost += [f"{rxn.stem}:{side[0].upper()}" for side in ok if not ok[side]]
    return {"n": len(reactions), **kept, "lost": lost, "seconds": time.perf_counter() - t0}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reactions", type=Path)
    ap.add_argument("-p", "--potential", action="append", required=True)
    ap.add_argument("--fmax", type=float, default=0.01, help="eV/Å, as the IRC's end relaxation")
    ap.add_argument("--max-steps", type=int, default=500)
    ap.add_argument("--dtype", default="float32")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    files = sorted(a.reactions.glob("*.xyz"))
    print(f"{'potential':34s} {'reactions':>9s} {'R kept':>7s} {'P kept':>7s} {'both':>5s} {'s':>7s}  lost")
    for pot in a.potential:
        res = stability(files, pot, a.fmax, a.max_steps, a.dtype)
        print(f"{pot:34s} {res['n']:9d} {res['reactant']:7d} {res['product']:7d} {res['both']:5d} "
              f"{res['seconds']:7.1f}  {' '.join(res['lost'][:12])}{' …' if len(res['lost']) > 12 else ''}",
              flush=True)


if __name__ == "__main__":
    main()
