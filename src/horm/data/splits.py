"""Deterministic reaction-level splits: every geometry of a reaction lands in one split.

A reaction goes to ``val`` when a seeded hash of its id falls below the val fraction,
so the split is stable across machines, orderings and dataset growth (adding reactions
never moves old ones). Samples without a reaction id are grouped by their own key.

Because a sample's split follows from its own reaction id, ``split_dataset`` streams: it
reads the source once, in order, and appends each sample to ``train.hstore`` or
``val.hstore`` in batches, holding one batch in memory, not the dataset (each record is
decoded once, to be written again).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

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


def split_dataset(src: str | os.PathLike, out_dir: str | os.PathLike, val_fraction: float = 0.1, seed: int = 0,
                  overwrite: bool = False, batch: int = 256, allow_outliers: bool = False) -> dict[str, dict]:
    """Stream ``src`` into ``out_dir/train.hstore`` and ``out_dir/val.hstore`` by reaction
    (labels outside :mod:`horm.data.plausibility`'s bounds refused unless ``allow_outliers``).

    Returns ``{"train" | "val": {"path", "samples", "reactions"}}``.
    """
    from horm.data.io import level_of_theory, open_dataset
    from horm.data.store import HessianStore

    if not 0.0 <= val_fraction < 1.0:
        raise UsageError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ds = open_dataset(src)
    lot = level_of_theory(ds)
    out = Path(out_dir)
    names = ("train", "val")
    stores = {}
    try:
        for name in names:
            stores[name] = HessianStore.create(out / f"{name}.hstore", lot, overwrite=overwrite, source=str(src),
                                               split=name, val_fraction=val_fraction, seed=seed)
        pending: dict[str, list] = {n: [] for n in names}
        groups: dict[str, bool] = {}  # reaction id -> in val
        for i, s in enumerate(ds):
            g = sample_group(s, i)
            if g not in groups:
                groups[g] = _unit_hash(g, seed) < val_fraction
            name = "val" if groups[g] else "train"
            pending[name].append(s)
            if len(pending[name]) >= batch:
                stores[name].extend(pending[name], allow_outliers=allow_outliers)
                pending[name] = []
        for name in names:
            if pending[name]:
                stores[name].extend(pending[name], allow_outliers=allow_outliers)
        n_rxn = {"val": sum(groups.values()), "train": len(groups) - sum(groups.values())}
        return {n: {"path": out / f"{n}.hstore", "samples": len(stores[n]), "reactions": n_rxn[n]} for n in names}
    finally:
        for st in stores.values():
            st.close()
