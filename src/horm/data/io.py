"""Open any dataset horm understands: our store, a published HORM LMDB, or (ext)xyz."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from horm.data.sample import Sample
from horm.errors import DataError


class SampleList(list):
    """A list of Samples with a ``path`` and a ``level_of_theory`` (for xyz input)."""

    path: Path | None = None
    level_of_theory: str = "unknown"


def open_dataset(path: str | os.PathLike) -> Sequence[Sample]:
    """Return an indexable of Samples for ``path``.

    * a horm store (LMDB file with ``__meta__``) -> :class:`HessianStore` (read-only)
    * a HORM LMDB file or a directory of them -> :class:`HormLmdb`
    * ``.xyz`` / ``.extxyz`` -> a list of Samples
    """
    from horm.data.horm_lmdb import HormLmdb, is_horm_lmdb
    from horm.data.store import HessianStore, is_store

    p = Path(path)
    if not p.exists():
        raise DataError(str(p), "no such file or directory")
    if p.suffix in (".xyz", ".extxyz"):
        from horm.data.xyz import read_xyz

        out = SampleList(read_xyz(p))
        out.path = p
        return out
    if is_store(p):
        return HessianStore.open(p)
    if is_horm_lmdb(p):
        return HormLmdb(p)
    raise DataError(str(p), "not a horm store, a HORM LMDB, or an xyz file")


def level_of_theory(ds) -> str:
    meta = getattr(ds, "meta", None)
    if meta:
        return str(meta.get("level_of_theory", "unknown"))
    if type(ds).__name__ == "HormLmdb":
        return "ωB97X/6-31G(d) (published HORM)"
    return getattr(ds, "level_of_theory", "unknown")
