"""Helpers shared by tests: random and ASE molecules, random orthogonal maps, float64 prediction."""

from __future__ import annotations

import numpy as np
import torch

from horm.data.batch import collate
from horm.data.sample import Sample


def random_molecule(rng, n: int) -> Sample:
    """n atoms of H/C/N/O, no pair closer than 0.95 Å, roughly molecular density."""
    while True:
        pos = rng.normal(size=(n, 3)) * (0.55 * n ** (1 / 3) + 0.5)
        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + 10 * np.eye(n)
        if d.min() > 0.95:
            return Sample(numbers=rng.choice([1, 6, 7, 8], size=n), pos=pos)


def random_rotation(rng, proper: bool = True) -> np.ndarray:
    """A Haar-random 3×3 orthogonal matrix: a rotation (det +1) or, with proper=False, a reflection."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if (np.linalg.det(q) > 0) != proper:
        q[:, 0] *= -1
    return q


def predict(model, samples, hessian=False):
    """(batch, outputs) of a model in float64, outputs detached."""
    b = collate(samples, dtype=torch.float64)
    return b, model(b, compute_hessian=hessian, create_graph=False)


def ase_molecules(names, n=None, seed=0, noise=0.02):
    """ASE's named molecules (cycled to ``n``), each with Gaussian noise (Å) on the positions."""
    from ase.build import molecule

    rng = np.random.default_rng(seed)
    base = [molecule(m) for m in names]
    out = []
    for i in range(n or len(base)):
        a = base[i % len(base)]
        out.append(Sample(numbers=a.numbers.astype(np.int64), pos=a.positions + rng.normal(0, noise, a.positions.shape)))
    return out
