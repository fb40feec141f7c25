"""Open any dataset horm understands: our store, a published HORM LMDB, or (ext)xyz."""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Sequence

from horm.data.formats import LabelKeys, is_ase_path, unused_label_fields
from horm.data.sample import Sample
from horm.errors import DataError


class SampleList(list):
    """A list of Samples with a ``path``, a ``level_of_theory`` and, when the file seems to
    hold labels under other names, a ``label_hint`` (for xyz and ASE input)."""

    path: Path | None = None
    level_of_theory: str = "unknown"
    label_hint: str = ""


def open_dataset(path: str | os.PathLike, keys: LabelKeys | None = None) -> Sequence[Sample]:
    """Return an indexable of Samples for ``path``.

    * a horm store (LMDB file with ``__meta__``) -> :class:`HessianStore` (read-only)
    * a HORM LMDB file or a directory of them -> :class:`HormLmdb`
    * ``.xyz`` / ``.extxyz`` / ``.traj`` / ASE ``.db`` -> a list of Samples, labels read
      under ``keys`` (see :mod:`horm.data.formats`)
    """
    from horm.data.horm_lmdb import HormLmdb, is_horm_lmdb
    from horm.data.store import HessianStore, is_store

    p = Path(path)
    if not p.exists():
        raise DataError(str(p), "no such file or directory")
    if is_ase_path(p):
        from horm.data.xyz import read_xyz

        out = SampleList(read_xyz(p, keys=keys))
        out.path = p
        if out and out[0].energy is None and not (keys and keys.energy):
            found = unused_label_fields(p)
            if found:
                out.label_hint = (f"{p} has fields {', '.join(found)}; name them with --energy-key/--forces-key/"
                                  f"--hessian-key")
        return out
    if is_store(p):
        return HessianStore.open(p)
    if is_horm_lmdb(p):
        return HormLmdb(p)
    raise DataError(str(p), "not a horm store, a HORM LMDB, or an xyz/extxyz/.traj/ASE .db file")


def level_of_theory(ds) -> str:
    meta = getattr(ds, "meta", None)
    if meta:
        return str(meta.get("level_of_theory", "unknown"))
    if type(ds).__name__ == "HormLmdb":
        return "ωB97X/6-31G(d) (published HORM)"
    return getattr(ds, "level_of_theory", "unknown")


def origin_matches(origin: str, prefixes: Sequence[str]) -> bool:
    """True when ``origin`` is one of ``prefixes`` or continues one with ``:``: ``ts`` matches
    ``ts`` but not ``tsopt:last``; ``irc`` matches ``irc:forward:3``; ``neb:final`` matches
    ``neb:final:img4``."""
    return any(origin == p or origin.startswith(p + ":") for p in prefixes)


class OriginSubset(Sequence):
    """The samples of a dataset whose origin matches (:func:`origin_matches`), read lazily from it;
    ``meta``, ``level_of_theory`` and ``path`` are the dataset's."""

    def __init__(self, ds, indices: list[int], prefixes: Sequence[str]):
        self.ds, self.indices, self.prefixes = ds, indices, tuple(prefixes)
        self.meta = getattr(ds, "meta", None)
        self.path = getattr(ds, "path", None)
        self.level_of_theory = level_of_theory(ds)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.ds[self.indices[i]]


def select_origins(ds, prefixes: Sequence[str], source: str | os.PathLike = "dataset") -> OriginSubset:
    """Only the samples of ``ds`` made at the given stages (``origin`` such as ``ts``,
    ``irc:forward``, ``neb:final``, ``reactant``; see :func:`origin_matches`). Reads every sample
    once; a prefix that is blank, or that matches nothing, is a :class:`DataError` naming ``source``
    and the origins the file does hold."""
    from collections import Counter

    prefixes = [str(p).strip().rstrip(":") for p in prefixes]
    if not prefixes or any(not p for p in prefixes):
        raise DataError(str(source), f"an origin prefix is blank (got {list(prefixes)})")
    kinds: Counter = Counter()
    keep = []
    for i in range(len(ds)):
        origin = str(ds[i].origin or "")
        kinds[origin.split(":")[0] or "(none)"] += 1
        if origin_matches(origin, prefixes):
            keep.append(i)
    if not keep:
        held = ", ".join(f"{k} ({n})" for k, n in kinds.most_common()) or "no samples"
        raise DataError(str(source), f"no sample has origin {' or '.join(prefixes)}; origins held: {held}")
    return OriginSubset(ds, keep, prefixes)
