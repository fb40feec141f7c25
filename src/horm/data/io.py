"""Open any dataset horm understands: our store, a published HORM LMDB, or (ext)xyz."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

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
