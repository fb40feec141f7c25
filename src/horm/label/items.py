"""The input side of labelling: every geometry of a file, store or folder, with a stable key.

A key is the sample's own key when it has one (stores, HORM LMDB: ``<file>:<record>``), else
``<file name>:<frame index>``, followed by ``#`` and a hash of the geometry (numbers,
positions, charge, multiplicity): resuming skips exactly the geometries already labelled, and
an edited or different input under the same name is labelled again.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Iterator

from horm.data.formats import ASE_SUFFIXES
from horm.data.sample import Sample
from horm.errors import DataError
from horm.safe_io import list_files


def _xyz_files(d: Path) -> list[Path]:
    """The regular xyz/ASE files of ``d`` (symlink loops, dangling links and devices left out)."""
    return list_files(d, ASE_SUFFIXES)[0]


_HASHED = re.compile(r"#[0-9a-f]{16}$")


def resume_key(base: str, s: Sample) -> str:
    """``<base>#<geometry hash>``; a hash already on ``base`` (a relabelled store) is replaced."""
    return f"{_HASHED.sub('', base)}#{s.geometry_hash()}"


def open_items(path: str | os.PathLike, charge: int | None = None, multiplicity: int | None = None,
               notes: dict[str, int] | None = None) -> tuple[int, Callable[[], Iterator[Sample]]]:
    """(count, iterator factory) over the geometries of ``path``, each with a stable ``key``.

    Keys: a sample's own key if set, else ``<file name>:<frame>``, plus ``#<geometry hash>``
    (:func:`resume_key`, after the charge and multiplicity are settled). For a directory of
    xyz files, a sample without a reaction id gets the file's stem as ``rxn``. ``charge`` and
    ``multiplicity`` override each sample's; an odd electron count with no multiplicity
    given becomes a doublet (:func:`horm.label.engine.resolve_spin`), counted in ``notes``.
    """
    from horm.data.io import open_dataset
    from horm.data.xyz import read_xyz
    from horm.label.engine import resolve_spin

    def spin(s: Sample) -> None:
        if resolve_spin(s, charge, multiplicity) and notes is not None:
            notes[_DOUBLET] = notes.get(_DOUBLET, 0) + 1

    p = Path(path)
    if not p.exists():
        raise DataError(str(p), "no such file or directory")
    if p.is_dir() and _xyz_files(p):
        frames: list[Sample] = []
        for f in _xyz_files(p):
            for i, s in enumerate(read_xyz(f)):
                s.rxn = s.rxn or f.stem
                spin(s)
                s.key = resume_key(s.key or f"{f.name}:{i}", s)
                frames.append(s)
        return len(frames), lambda: iter(frames)
    ds = open_dataset(p)

    def it() -> Iterator[Sample]:
        for i in range(len(ds)):
            s = ds[i]
            base = s.key or f"{p.name}:{i}"
            spin(s)
            s.key = resume_key(base, s)
            yield s

    return len(ds), it


_DOUBLET = "had an odd electron count and no multiplicity: computed as doublets"


def strip_labels(s: Sample) -> Sample:
    """The geometry only (labels and extras of another level of theory dropped)."""
    return Sample(numbers=s.numbers, pos=s.pos, charge=s.charge, multiplicity=s.multiplicity,
                  rxn=s.rxn, origin=s.origin, key=s.key)
