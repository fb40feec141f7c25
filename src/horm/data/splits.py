"""Deterministic reaction-level splits: every geometry of a reaction lands in one split.

A reaction goes to ``val`` when a seeded hash of its id falls below the val fraction,
so the split is stable across machines, orderings and dataset growth (adding reactions
never moves old ones). Samples without a reaction id are grouped by their own key.
"""

from __future__ import annotations

import hashlib

import numpy as np

from horm.errors import UsageError


def _unit_hash(group: str, seed: int) -> float:
    h = hashlib.blake2b(f"{seed}:{group}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64


def reaction_split(groups: list[str], val_fraction: float = 0.1, seed: int = 0) -> np.ndarray:
    """Boolean mask (len(groups),): True where the sample's reaction goes to val."""
    if not 0.0 <= val_fraction < 1.0:
        raise UsageError(f"val_fraction must be in [0, 1), got {val_fraction}")
    cache: dict[str, bool] = {}
    mask = np.zeros(len(groups), dtype=bool)
    for i, g in enumerate(groups):
        if g not in cache:
            cache[g] = _unit_hash(g, seed) < val_fraction
        mask[i] = cache[g]
    return mask


def sample_group(sample, index: int) -> str:
    return sample.rxn or sample.key or f"#{index}"
