"""Deterministic reaction-level splits: every geometry of a reaction lands in one split.

A reaction goes to ``val`` when a seeded hash of its id falls below the val fraction,
so the split is stable across machines, orderings and dataset growth (adding reactions
never moves old ones). A sample without a reaction id is a group of its own.

:func:`split_mask` is the one split of the package: ``horm train`` (``data.val_fraction``) and
``horm data split`` put the same samples in validation for the same seed. It reads the cached
reaction index (:func:`horm.data.index.reaction_ids`), not the samples. A file with fewer than
two reaction ids (the shared HORM sample: ``rxn == 1`` everywhere), or too few reactions to
give each side one, is split per sample, and a note says so; never silently.

``split_dataset`` streams: it reads the source once, in order, and appends each sample to
``train.hstore`` or ``val.hstore`` in batches, holding one batch in memory, not the dataset.
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


def split_mask(src, fraction: float, seed: int, notes: list[str], name: str, progress=None,
               hint: str = "give the validation set as its own file") -> np.ndarray:
    """True where a sample of ``src`` goes to validation: by reaction (:func:`reaction_split` over
    the cached reaction index), per sample where a sample has no reaction id. A file with fewer
    than two reaction ids, or too few reactions to give both sides one, is split per sample, and a
    line in ``notes`` says so (ending with ``hint``). ``progress``: :data:`horm.data.index.IndexProgress`."""
    from horm.data.index import reaction_ids

    codes, names = reaction_ids(src, progress)
    return mask_from_ids(codes, names, fraction, seed, notes, name, hint)


def mask_from_ids(codes: np.ndarray, names: np.ndarray, fraction: float, seed: int, notes: list[str], name: str,
                  hint: str = "give the validation set as its own file") -> np.ndarray:
    """:func:`split_mask` over a reaction index already read (``codes``, ``names`` as
    :func:`horm.data.index.reaction_ids` gives them)."""
    n = len(codes)
    if fraction <= 0:
        return np.zeros(n, dtype=bool)
    groups = np.where(codes >= 0, codes, len(names) + np.arange(n))  # no id: a group of its own
    table = [str(x) for x in names] + [f"#{i}" for i in range(n)]
    uniq, inverse = np.unique(groups, return_inverse=True)
    mask = reaction_split([table[g] for g in uniq.tolist()], fraction, seed)[inverse]
    why = None
    if len(names) < 2:
        why = f"its samples carry {'no reaction id' if len(names) == 0 else 'one reaction id'}"
    elif mask.all() or not mask.any():
        why = f"its {len(names)} reactions are too few to put one on each side at val_fraction={fraction}"
    if why is not None:
        rng = np.random.default_rng(seed)
        mask = rng.random(n) < fraction
        mask[rng.integers(n)] = True
        if mask.all():
            mask[0] = False
        notes.append(f"{name}: {why}, so the validation split is per sample (geometries of one reaction "
                     f"can land on both sides; {hint})")
    elif (codes < 0).any():
        notes.append(f"{name}: {int((codes < 0).sum())} of {n} samples carry no reaction id and are split per sample")
    return mask


def split_dataset(src: str | os.PathLike, out_dir: str | os.PathLike, val_fraction: float = 0.1, seed: int = 0,
                  overwrite: bool = False, batch: int = 256, allow_outliers: bool = False,
                  show_progress: bool = False) -> dict:
    """Stream ``src`` into ``out_dir/train.hstore`` and ``out_dir/val.hstore`` by :func:`split_mask`
    (labels outside :mod:`horm.data.plausibility`'s bounds refused unless ``allow_outliers``).

    Returns ``{"train" | "val": {"path", "samples", "reactions"}, "notes": [lines]}``; ``reactions``
    counts distinct reaction ids (a sample without one counts as its own).
    """
    from horm.data.index import reaction_ids
    from horm.data.io import level_of_theory, open_dataset
    from horm.data.store import HessianStore
    from horm.progress import passes

    if not 0.0 <= val_fraction < 1.0:
        raise UsageError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ds = open_dataset(src)
    lot, out, names, stores, notes = level_of_theory(ds), Path(out_dir), ("train", "val"), {}, []
    with passes(show_progress) as progress:
        codes, rxn_names = reaction_ids(ds, progress)
        mask = mask_from_ids(codes, rxn_names, val_fraction, seed, notes, str(src),
                             hint="split it yourself and pass both files to horm train --data/--val")
        try:
            for name in names:
                stores[name] = HessianStore.create(out / f"{name}.hstore", lot, overwrite=overwrite, source=str(src),
                                                   split=name, val_fraction=val_fraction, seed=seed)
            _stream(ds, mask, stores, batch, allow_outliers, progress)
        finally:
            for st in stores.values():
                st.close()
    groups = np.where(codes >= 0, codes, codes.max(initial=-1) + 1 + np.arange(len(codes)))
    res: dict = {n: {"path": out / f"{n}.hstore", "samples": int((mask == (n == "val")).sum()),
                     "reactions": len(np.unique(groups[mask == (n == "val")]))} for n in names}
    res["notes"] = notes
    return res


def _stream(ds, mask: np.ndarray, stores: dict, batch: int, allow_outliers: bool, progress) -> None:
    """Append every sample of ``ds`` to ``stores["val"]`` where ``mask``, else ``stores["train"]``,
    in batches of ``batch``, in order."""
    pending: dict[str, list] = {n: [] for n in stores}
    advance = progress("splitting", len(ds)) if progress else (lambda k: None)
    for i, s in enumerate(ds):
        name = "val" if mask[i] else "train"
        pending[name].append(s)
        if len(pending[name]) >= batch:
            stores[name].extend(pending[name], allow_outliers=allow_outliers)
            pending[name] = []
        if i % 256 == 255:
            advance(256)
    for name, rest in pending.items():
        if rest:
            stores[name].extend(rest, allow_outliers=allow_outliers)
    advance(len(ds) % 256)
