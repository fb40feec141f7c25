"""Which visited geometries to label: top scores, diverse, never already in the store.

Both strategies walk the pool in an order and take a geometry unless it is a
near-duplicate — within ``min_rmsd`` Å (Kabsch-aligned RMSD) of a geometry already picked
in this batch, or of one already in the store — until ``budget`` are taken:

- ``committee``: by committee score, highest first (greedy; ties keep pool order);
- ``random``: a seeded random permutation of the same pool (the baseline);
- ``window``: DP-GEN's trust window (Zhang et al., Comput. Phys. Commun. 253, 107206
  (2020)): geometries scored within ``[trust_lo, trust_hi]`` in a seeded random order, then,
  if the budget is not spent, the rest below ``trust_lo`` by score, highest first. In DP-GEN's
  reading a score above ``trust_hi`` marks a geometry too far off for its label to help (here,
  often a broken search iterate): it is never picked. ``benchmarks/learn_score_validity.py``
  measures how error and score relate on labelled picks, to place both ends.

Two geometries are compared only when they hold the same atoms in the same order
(``numbers`` equal element by element): the pool and the store both come from the same
reaction files, whose atom order they keep. Geometries of another order are never called
duplicates (no permutation search).
"""

from __future__ import annotations

from typing import Literal, Sequence, get_args

import numpy as np

from horm.errors import UsageError
from horm.ts.verify import aligned_rmsd_many

Strategy = Literal["committee", "random", "window"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)


class GeometryIndex:
    """Geometries grouped by atom sequence, for near-duplicate queries (:meth:`near`)."""

    def __init__(self):
        self._groups: dict[bytes, list[np.ndarray]] = {}

    @staticmethod
    def _key(numbers) -> bytes:
        return np.asarray(numbers, dtype=np.int64).tobytes()

    def add(self, numbers, pos) -> None:
        self._groups.setdefault(self._key(numbers), []).append(np.asarray(pos, dtype=np.float64))

    def __len__(self) -> int:
        return sum(len(g) for g in self._groups.values())

    def nearest(self, numbers, pos) -> float:
        """The smallest aligned RMSD from ``pos`` to a geometry of the same atoms (inf if none)."""
        group = self._groups.get(self._key(numbers))
        if not group:
            return float("inf")
        return float(aligned_rmsd_many(pos, np.stack(group)).min())

    def near(self, numbers, pos, min_rmsd: float) -> bool:
        return self.nearest(numbers, pos) < min_rmsd


def store_index(samples) -> GeometryIndex:
    """A :class:`GeometryIndex` of every sample's (numbers, pos) (a store, a list)."""
    idx = GeometryIndex()
    for s in samples:
        idx.add(s.numbers, s.pos)
    return idx


def _check(budget: int, min_rmsd: float) -> None:
    if budget < 0:
        raise UsageError(f"budget must be >= 0, got {budget}")
    if not min_rmsd >= 0:
        raise UsageError(f"min_rmsd must be >= 0 Å, got {min_rmsd}")


def greedy_diverse(order: Sequence[int], numbers: Sequence, positions: Sequence, budget: int,
                   min_rmsd: float, exclude: GeometryIndex | None = None) -> list[int]:
    """Walk ``order`` (pool indices), taking each geometry not within ``min_rmsd`` of a pick
    or of ``exclude``, until ``budget`` are taken. Returns the picked indices in pick order."""
    _check(budget, min_rmsd)
    picked = GeometryIndex()
    out: list[int] = []
    for i in order:
        if len(out) >= budget:
            break
        if picked.near(numbers[i], positions[i], min_rmsd):
            continue
        if exclude is not None and exclude.near(numbers[i], positions[i], max(min_rmsd, 1e-6)):
            continue
        picked.add(numbers[i], positions[i])
        out.append(int(i))
    return out


def window_order(scores, trust_lo: float, trust_hi: float, seed: int = 0) -> np.ndarray:
    """Pool indices in ``window`` order: inside [trust_lo, trust_hi] shuffled (seeded), then
    those below trust_lo by score, highest first; those above trust_hi are left out."""
    s = np.asarray(scores, dtype=np.float64)
    if not (np.isfinite(trust_lo) and np.isfinite(trust_hi) and 0 <= trust_lo <= trust_hi):
        raise UsageError(f"trust window needs 0 <= trust_lo <= trust_hi, got [{trust_lo}, {trust_hi}]")
    inside = np.flatnonzero((s >= trust_lo) & (s <= trust_hi))
    below = np.flatnonzero(s < trust_lo)
    below = below[np.argsort(-s[below], kind="stable")]
    return np.concatenate([np.random.default_rng(seed).permutation(inside), below]).astype(int)


def select(strategy: Strategy, scores, numbers: Sequence, positions: Sequence, budget: int, min_rmsd: float,
           exclude: GeometryIndex | None = None, seed: int = 0,
           trust: tuple[float, float] | None = None) -> list[int]:
    """Pool indices to label under ``strategy`` (see the module docstring); ``trust`` is the
    ``window`` strategy's (trust_lo, trust_hi) in the score's unit."""
    if strategy not in STRATEGIES:
        raise UsageError(f"strategy {strategy!r} is not valid; choose one of {', '.join(STRATEGIES)}")
    n = len(numbers)
    if len(positions) != n or (scores is not None and len(scores) != n):
        raise UsageError("scores, numbers and positions must describe the same pool")
    if strategy == "random":
        order = np.random.default_rng(seed).permutation(n)
    else:
        s = np.asarray(scores, dtype=np.float64)
        if not np.isfinite(s).all():
            raise UsageError("committee scores are not finite")
        if strategy == "committee":
            order = np.argsort(-s, kind="stable")
        else:
            if trust is None:
                raise UsageError("strategy 'window' needs a trust window (trust_lo, trust_hi)")
            order = window_order(s, float(trust[0]), float(trust[1]), seed)
    return greedy_diverse(order, numbers, positions, budget, min_rmsd, exclude)
