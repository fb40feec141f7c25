"""Committee disagreement of one geometry: pure functions on arrays.

A *committee* is a stack of M ≥ 2 predictions for one geometry: M models' forces
(M, N, 3) eV/Å and Hessians (M, 3N, 3N) eV/Å², or one model's direct Hessian head and
its own autograd Hessian (M = 2, see :mod:`horm.learn.committee`). Three scores:

- ``forces``: the largest over atoms of the RMS deviation of the atom's force from the
  committee mean, sqrt(mean_m |F_m,a − F̄_a|²) (eV/Å) — the usual force-committee score.
- ``hessian``: the RMS over the (3N)² entries of the committee's standard deviation (eV/Å²).
- ``eigen``: what a TS search depends on, the lowest ``k`` modes of the Hessian with
  rigid-body motion projected out (unweighted Cartesian translations and rotations, so
  eigenvalues stay in eV/Å²): the standard deviation of each of the k lowest eigenvalues
  over the committee (eV/Å², averaged over the k modes) plus ``vec_weight`` times the
  mean over member pairs of 1 − |cos| between their lowest eigenvectors (0 when all
  members agree on the mode, 1 when two are orthogonal). ``vec_weight`` is in eV/Å²: the
  eigenvalue spread a full swap of the lowest mode is worth.

Every score is 0 for an identical committee and grows with disagreement; none needs labels.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from horm.errors import UsageError
from horm.hessian.analysis import internal_basis

ScoreKind = Literal["eigen", "hessian", "forces"]
SCORE_KINDS: tuple[str, ...] = get_args(ScoreKind)


def _stack(x, ndim: int, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != ndim or a.shape[0] < 2:
        raise UsageError(f"{what}: expected a stack of at least 2 committee members with {ndim - 1} axes each, "
                         f"got shape {a.shape}")
    if not np.isfinite(a).all():
        raise UsageError(f"{what}: committee predictions are not finite")
    return a


def force_spread(forces) -> float:
    """max_a sqrt(mean_m |F_m,a − F̄_a|²) of forces (M, N, 3) eV/Å; returns eV/Å."""
    f = _stack(forces, 3, "forces")
    dev = f - f.mean(axis=0, keepdims=True)
    return float(np.sqrt((dev ** 2).sum(axis=2).mean(axis=0)).max())


def hessian_spread(hessians) -> float:
    """RMS over entries of the committee standard deviation of Hessians (M, 3N, 3N); eV/Å²."""
    h = _stack(hessians, 3, "hessians")
    return float(np.sqrt(h.var(axis=0).mean()))


def lowest_modes(hessian, pos, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The k lowest eigenpairs of a (3N, 3N) Hessian with rigid-body motion projected out.

    Returns eigenvalues (k,) in eV/Å², ascending, and unit eigenvectors (3N, k) in Cartesians.
    """
    h = np.asarray(hessian, dtype=np.float64)
    h = 0.5 * (h + h.T)
    q = internal_basis(np.asarray(pos, dtype=np.float64), np.ones(len(pos)))
    lam, v = np.linalg.eigh(q.T @ h @ q)
    k = min(k, lam.size)
    return lam[:k], q @ v[:, :k]


def eigen_spread(hessians, pos, k: int = 1, vec_weight: float = 1.0) -> dict[str, float]:
    """The ``eigen`` score and its two parts for Hessians (M, 3N, 3N) at positions ``pos`` (N, 3).

    Returns ``{"eigval_spread": eV/Å², "eigvec_disagreement": in [0, 1], "score": eV/Å²}``.
    """
    h = _stack(hessians, 3, "hessians")
    if k < 1:
        raise UsageError(f"k must be >= 1, got {k}")
    modes = [lowest_modes(hm, pos, k) for hm in h]
    lam = np.stack([m[0] for m in modes])  # (M, k)
    vec = np.stack([m[1] for m in modes])  # (M, 3N, k)
    val = float(lam.std(axis=0).mean())
    m = len(h)
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    cos = [np.abs(np.einsum("ak,ak->k", vec[i], vec[j])) for i, j in pairs]
    dis = float(np.mean([1.0 - np.clip(c, 0.0, 1.0) for c in cos]))
    return {"eigval_spread": val, "eigvec_disagreement": dis, "score": val + float(vec_weight) * dis}


def committee_score(kind: ScoreKind, forces, hessians, pos, k: int = 1, vec_weight: float = 1.0) -> float:
    """One number per geometry: the ``kind`` score of a committee (see the module docstring).

    forces: (M, N, 3) or None (not needed unless kind is ``forces``); hessians: (M, 3N, 3N)
    or None (not needed for ``forces``).
    """
    if kind not in SCORE_KINDS:
        raise UsageError(f"score {kind!r} is not valid; choose one of {', '.join(SCORE_KINDS)}")
    if kind == "forces":
        return force_spread(forces)
    if kind == "hessian":
        return hessian_spread(hessians)
    return eigen_spread(hessians, pos, k, vec_weight)["score"]
