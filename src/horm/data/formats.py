"""ASE formats in and out: extxyz, ASE trajectories (``.traj``) and ASE databases (``.db``).

**Export** (:func:`export_samples`, ``horm data export STORE out.extxyz|out.db``) writes one
structure per sample with these key names (units eV, Å):

======================  ===========================  ======================================
quantity                extxyz / .traj               ASE ``.db``
======================  ===========================  ======================================
energy (eV)             ``energy`` (calculator)      ``energy`` (calculator), ``row.energy``
forces (eV/Å, (N, 3))   ``forces`` (calculator)      ``forces`` (calculator), ``row.forces``
Hessian (eV/Å²)         ``info["hessian"]``          ``row.data["hessian"]``
charge, multiplicity    ``info["charge"]``, ...      key-value pairs ``charge``, ``multiplicity``
sample key, reaction    ``info["key"]``, ``"rxn"``   key-value pairs ``key``, ``rxn``, ``origin``
======================  ===========================  ======================================

The Hessian is flattened: 9N² floats, row-major over (atom, xyz) rows and columns, i.e.
``np.reshape(h, (3 * N, 3 * N))`` gives it back. ``ase.io.read`` (and ``ase.db``) read
every file back; so do horm's readers.

**Reading** (:func:`read_ase`): by default energy and forces come from the calculator
results (where ASE put ``energy=``/``forces`` columns) or the ``energy``/``forces`` fields,
the Hessian from ``hessian``. :class:`LabelKeys` names other fields (``--energy-key
REF_energy --forces-key REF_forces --hessian-key REF_hessian`` for MACE-style files); a
field is looked up in ``atoms.info``, ``atoms.arrays`` and, for a database row, its
key-value pairs and ``data``. A named key that a frame lacks is an error listing the keys
the frame has.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from horm.data.sample import MAX_ATOMS, MIN_DISTANCE, SPIN_KEYS, Sample, strict_int
from horm.errors import DataError, UsageError
from horm.safe_io import check_input_file, read_input_text

XYZ_SUFFIXES = (".xyz", ".extxyz")
ASE_SUFFIXES = (".xyz", ".extxyz", ".traj", ".db")
"""File extensions that mean an xyz-family or ASE file: a horm store is never written under them."""
_FORMAT = {".xyz": "extxyz", ".extxyz": "extxyz", ".traj": "traj", ".db": "db"}


@dataclass(frozen=True)
class LabelKeys:
    """Field names of the labels in a file (None: the defaults ``energy``, ``forces``, ``hessian``)."""

    energy: str | None = None
    forces: str | None = None
    hessian: str | None = None

    @property
    def any(self) -> bool:
        return any((self.energy, self.forces, self.hessian))


def is_ase_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in ASE_SUFFIXES


def check_store_path(path: str | os.PathLike) -> Path:
    """Refuse to write a horm store (an LMDB file) under an xyz-family or ASE extension."""
    p = Path(path)
    if is_ase_path(p):
        raise UsageError(f"{p}: a horm store is an LMDB file and is never written as {p.suffix!r}; "
                         f"use .hstore (or `horm data export` for {', '.join(ASE_SUFFIXES)})")
    return p


# --- reading ------------------------------------------------------------------------------------

def check_atom_count(n: int, lines_left: int, src: str, where: str) -> None:
    """Refuse an atom count above MAX_ATOMS, or above the lines left in the file (one per atom),
    before any loop runs over it."""
    if n > MAX_ATOMS:
        raise DataError(src, f"{n} atoms exceed the limit of {MAX_ATOMS} per sample", where)
    if n > lines_left:
        raise DataError(src, f"atom count line says {n} atoms but only {max(lines_left, 0)} lines follow", where)


def check_xyz_counts(lines: list[str], src: str) -> None:
    """Walk the frames of an (ext)xyz text by their atom-count lines and check every count
    against the lines left (:func:`check_atom_count`); a line that is not a count ends the walk
    (the reader then says what is wrong)."""
    i, frame = 0, 0
    while i < len(lines):
        head = lines[i].split()
        if not head:
            i += 1
            continue
        if len(head) != 1 or not head[0].isdigit():
            return
        n = int(head[0])
        check_atom_count(n, len(lines) - i - 2, src, f"frame {frame} (line {i + 1})")
        i, frame = i + 2 + n, frame + 1


def _frames(path: Path, fmt: str, text: str | None = None) -> list:
    """ASE Atoms of every frame; a database row's key-value pairs and data land in ``info``.
    The file is read through :mod:`horm.safe_io` (regular files under the size cap only), and
    an extxyz's atom counts are checked before ASE loops over them."""
    if fmt == "db":
        from ase.db import connect

        check_input_file(path)
        with connect(str(path), type="db") as db:
            out = []
            for row in db.select():
                a = row.toatoms()
                a.info.update(row.key_value_pairs)
                a.info.update(row.get("data", {}) or {})
                out.append(a)
            return out
    from ase.io import read

    if fmt != "extxyz":
        check_input_file(path)
        return read(str(path), index=":", format=fmt)
    text = read_input_text(path) if text is None else text
    check_xyz_counts(text.splitlines(), str(path))
    return read(io.StringIO(text), index=":", format=fmt)


def _fields(atoms) -> dict:
    out = {k: v for k, v in atoms.arrays.items() if k not in ("numbers", "positions")}
    out.update(atoms.info)
    return out


def _missing(src: str, what: str, key: str, fields: dict, k: int) -> DataError:
    found = ", ".join(sorted(fields)) or "none"
    return DataError(src, f"no {what} under key {key!r}; keys found: {found}", f"frame {k}")


def _labels(atoms, keys: LabelKeys, src: str, k: int) -> list[tuple[str, object]]:
    """(key name, raw value or None) of the energy, the forces and the Hessian of one frame."""
    res = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
    fields = _fields(atoms)
    names = {**fields, **{n: v for n, v in res.items() if n in ("energy", "forces")}}
    got = []
    for what, key, default in (("energy", keys.energy, "energy"), ("forces", keys.forces, "forces"),
                               ("Hessian", keys.hessian, "hessian")):
        if key is None:
            got.append((default, res.get(default, fields.get(default)) if default != "hessian" else fields.get(default)))
        elif key in names:
            got.append((key, names[key]))
        else:
            raise _missing(src, what, key, names, k)
    return got


def _numeric(key: str, value, src: str, k: int) -> np.ndarray | None:
    """``value`` as float64 numbers; a non-numeric field is one DataError naming the key."""
    if value is None:
        return None
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        shown = " ".join(str(value).split())[:30]
        raise DataError(src, f"{key}={shown!r} is not numeric", f"frame {k}") from None


def _sample(atoms, keys: LabelKeys, src: str, k: int, name: str) -> Sample:
    (ekey, energy), (fkey, forces), (hkey, hessian) = ((key, _numeric(key, v, src, k))
                                                      for key, v in _labels(atoms, keys, src, k))
    n = len(atoms)
    for key in ("charge", *SPIN_KEYS):  # integers only: 1.5 or "two" is an error, never truncated
        if key in atoms.info:
            slot = "multiplicity" if key in SPIN_KEYS else key
            atoms.info[slot] = strict_int(atoms.info[key], key, src, f"frame {k}")
    atoms.calc = None  # the labels are taken above, checked, not from the raw results
    s = Sample.from_atoms(atoms)
    s.hessian = None
    if energy is not None and energy.size != 1:
        raise DataError(src, f"{ekey} must be one number, got {energy.size}", f"frame {k}")
    s.energy = None if energy is None else float(energy.reshape(()))
    if forces is not None:
        if forces.size != 3 * n:
            raise DataError(src, f"{fkey} has {forces.size} numbers, expected ({n}, 3)", f"frame {k}")
        s.forces = forces.reshape(n, 3)
    if hessian is not None:
        if hessian.size != 9 * n * n:
            raise DataError(src, f"Hessian has {hessian.size} entries, expected {9 * n * n} for {n} atoms", f"frame {k}")
        s.hessian = hessian.reshape(3 * n, 3 * n)
    s.key = str(atoms.info.get("key", "")) or s.key
    s.origin = s.origin or f"{name}:{k}"
    return s


def read_ase(path: str | os.PathLike, keys: LabelKeys | None = None, validate: bool = True,
             min_distance: float = MIN_DISTANCE, text: str | None = None) -> list[Sample]:
    """Every frame of an extxyz, ``.traj`` or ASE ``.db`` file as a Sample (labels per ``keys``);
    ``text``: the extxyz's text when the caller has read it already."""
    path = Path(path)
    src = str(path)
    fmt = _FORMAT.get(path.suffix.lower())
    if fmt is None:
        raise DataError(src, f"not an ASE file ({', '.join(ASE_SUFFIXES)})")
    try:
        frames = _frames(path, fmt, text)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - ASE raises anything on a malformed file
        raise DataError(src, f"cannot read as {fmt} ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    if not frames:
        raise DataError(src, "no frames found")
    out = []
    for k, atoms in enumerate(frames):
        s = _sample(atoms, keys or LabelKeys(), src, k, path.name)
        if validate:
            s.validate(src, f"frame {k}", min_distance=min_distance)
        out.append(s)
    return out


def unused_label_fields(path: str | os.PathLike) -> list[str]:
    """Fields of the first frame whose names look like labels but are not the default ones
    (e.g. ``REF_energy``): what to suggest when a file seems to have no labels."""
    path = Path(path)
    try:
        frames = _frames(path, _FORMAT[path.suffix.lower()])[:1]
    except Exception:  # noqa: BLE001 - only a hint
        return []
    if not frames:
        return []
    return sorted(k for k in _fields(frames[0]) if k not in ("energy", "forces", "hessian")
                  and any(w in k.lower() for w in ("energy", "force", "hessian", "grad")))


# --- writing ------------------------------------------------------------------------------------

def _atoms(s: Sample):
    a = s.to_atoms()
    if s.hessian is not None:
        a.info["hessian"] = np.asarray(s.hessian, dtype=np.float64).reshape(-1)
    if s.key:
        a.info["key"] = s.key
    return a


def export_samples(samples: Iterable[Sample], path: str | os.PathLike, overwrite: bool = False) -> int:
    """Write ``samples`` to an extxyz/xyz, ``.traj`` or ASE ``.db`` file, atomically (a
    temporary file renamed at the end); returns the number written.

    Key names: energy (eV) and forces (eV/Å) as ASE calculator results (``energy``,
    ``forces``); the Hessian (eV/Å²) flattened to 9N² floats, row-major over (atom, xyz), as
    ``atoms.info["hessian"]`` (extxyz, traj) or ``row.data["hessian"]`` (db); ``charge``,
    ``multiplicity``, ``key``, ``rxn``, ``origin`` in ``atoms.info`` (db: key-value pairs).
    """
    path = Path(path)
    fmt = _FORMAT.get(path.suffix.lower())
    if fmt is None:
        raise DataError(str(path), f"cannot export to {path.suffix!r}; use one of {', '.join(ASE_SUFFIXES)}")
    if path.exists() and not overwrite:
        raise DataError(str(path), "destination exists (use --overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    n = 0
    try:
        if fmt == "db":
            n = _write_db(samples, tmp)
        elif fmt == "traj":
            from ase.io.trajectory import Trajectory

            with Trajectory(str(tmp), "w") as traj:
                for s in samples:
                    traj.write(_atoms(s))
                    n += 1
        else:
            from ase.io import write

            with open(tmp, "w") as fh:
                for s in samples:
                    write(fh, _atoms(s), format="extxyz")
                    n += 1
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def _write_db(samples: Iterable[Sample], tmp: Path) -> int:
    from ase.db import connect

    n = 0
    with connect(str(tmp), type="db", append=False) as db:
        for s in samples:
            a = s.to_atoms()
            a.info = {}
            kv = {"charge": int(s.charge), "multiplicity": int(s.multiplicity)}
            kv.update({k: v for k, v in (("key", s.key), ("rxn", s.rxn), ("origin", s.origin)) if v})
            data = {} if s.hessian is None else {"hessian": np.asarray(s.hessian, dtype=np.float64).reshape(-1)}
            db.write(a, key_value_pairs=kv, data=data)
            n += 1
    return n
