"""xyz in and out: plain and multi-frame xyz, reaction files, extxyz with labels.

Plain xyz is parsed here strictly so that every problem gets a one-line error naming
the file, the frame and the line (ASE's reader would raise a bare traceback).
Extended xyz (energy/forces in the comment/columns) goes through ``ase.io``.

A *reaction file* holds two frames, reactant then product, with the same atoms in the
same order (the layout of ``../shared/data/t1x_val_reactions``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from horm.data.formats import LabelKeys, check_atom_count, read_ase
from horm.data.sample import MIN_DISTANCE, SPIN_KEYS, Sample, strict_int, symbols_to_numbers
from horm.errors import DataError
from horm.safe_io import read_input_text, write_atomic


def _is_extxyz(comment: str) -> bool:
    return "Properties=" in comment or "energy=" in comment.lower()


def read_xyz(path: str | os.PathLike, validate: bool = True, min_distance: float = MIN_DISTANCE,
             keys: LabelKeys | None = None) -> list[Sample]:
    """All frames of an xyz, extxyz, ``.traj`` or ASE ``.db`` file as Samples; labels are
    read from extxyz and ASE files under ``keys`` (:func:`horm.data.formats.read_ase`)."""
    path = Path(path)
    src = str(path)
    if path.suffix.lower() in (".traj", ".db") or (keys is not None and keys.any):
        return read_ase(path, keys, validate, min_distance)
    text = read_input_text(path)  # regular files under the size cap only
    lines = text.splitlines()
    if len(lines) >= 2 and _is_extxyz(lines[1]):
        return read_ase(path, keys, validate, min_distance, text=text)
    frames: list[Sample] = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        frame = len(frames)
        where = f"frame {frame} (line {i + 1})"
        try:
            n = int(lines[i].split()[0])
            if n <= 0 or len(lines[i].split()) != 1:
                raise ValueError
        except ValueError:
            raise DataError(src, f"expected an atom count, got {lines[i].strip()[:40]!r}", where) from None
        check_atom_count(n, len(lines) - i - 2, src, where)
        comment = lines[i + 1] if i + 1 < len(lines) else ""
        body = lines[i + 2: i + 2 + n]
        symbols, pos = [], np.empty((n, 3))
        for a, line in enumerate(body):
            parts = line.split()
            lw = f"frame {frame}, line {i + 3 + a}"
            if len(parts) < 4:
                raise DataError(src, f"expected 'element x y z', got {line.strip()[:60]!r}", lw)
            try:
                pos[a] = [float(x) for x in parts[1:4]]
            except ValueError:
                raise DataError(src, f"non-numeric coordinate in {line.strip()[:60]!r}", lw) from None
            symbols.append(parts[0])
        nxt = lines[i + 2 + n].split() if i + 2 + n < len(lines) else []
        if len(nxt) >= 4 and not (len(nxt) == 1 and nxt[0].isdigit()):
            raise DataError(src, f"atom count line says {n} atoms but more coordinate lines follow", where)
        numbers = symbols_to_numbers(symbols, src, where)
        s = Sample(numbers=numbers, pos=pos, origin=f"xyz:{path.name}:{frame}")
        _parse_comment(s, comment, src, f"frame {frame}")
        if validate:
            s.validate(src, f"frame {frame}", min_distance=min_distance)
        frames.append(s)
        i += 2 + n
    if not frames:
        raise DataError(src, "no frames found")
    return frames


def _parse_comment(s: Sample, comment: str, src: str, where: str) -> None:
    """Pick charge= / multiplicity= (or mult=) from a comment line, if present; strictly."""
    for tok in comment.replace(",", " ").split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            k = k.lower()
            if k == "charge":
                s.charge = strict_int(v, k, src, where)
            elif k in SPIN_KEYS:
                s.multiplicity = strict_int(v, k, src, where)


def read_reaction(path: str | os.PathLike) -> tuple[Sample, Sample]:
    """Reactant and product of a reaction file (two frames, same atoms, same order)."""
    path = Path(path)
    frames = read_xyz(path)
    src = str(path)
    if len(frames) != 2:
        raise DataError(src, f"a reaction file needs exactly 2 frames (reactant, product), found {len(frames)}")
    r, p = frames
    if r.natoms != p.natoms:
        raise DataError(src, f"reactant has {r.natoms} atoms but product has {p.natoms}")
    if sorted(r.numbers.tolist()) != sorted(p.numbers.tolist()):
        raise DataError(src, f"reactant ({r.formula}) and product ({p.formula}) have different elements")
    if not np.array_equal(r.numbers, p.numbers):
        k = int(np.flatnonzero(r.numbers != p.numbers)[0])
        raise DataError(src, f"atom order differs between reactant and product (first at atom {k}: "
                             f"{r.symbols[k]} vs {p.symbols[k]})")
    rxn = path.stem
    r.rxn = p.rxn = rxn
    r.origin, p.origin = "reactant", "product"
    if p.charge == 0 and r.charge:
        p.charge = r.charge
    if p.multiplicity == 1 and r.multiplicity != 1:
        p.multiplicity = r.multiplicity
    return r, p


def format_xyz(samples: list[Sample], comments: list[str] | None = None) -> str:
    out = []
    for k, s in enumerate(samples):
        c = comments[k] if comments else (s.origin or "")
        out.append(str(s.natoms))
        out.append(c.replace("\n", " "))
        for sym, (x, y, z) in zip(s.symbols, np.asarray(s.pos, dtype=float)):
            out.append(f"{sym:<2s} {x: .10f} {y: .10f} {z: .10f}")
    return "\n".join(out) + "\n"


def write_xyz(path: str | os.PathLike, samples: Sample | list[Sample], comments: list[str] | None = None) -> Path:
    """Write plain multi-frame xyz atomically (temp file + rename)."""
    if isinstance(samples, Sample):
        samples = [samples]
    return write_atomic(path, format_xyz(samples, comments))


def write_extxyz(path: str | os.PathLike, samples: list[Sample]) -> Path:
    """Write labelled samples as extxyz (energy, forces; Hessian flattened in info), atomically;
    the key names are those of :func:`horm.data.formats.export_samples`."""
    from horm.data.formats import export_samples

    export_samples(samples, path, overwrite=True)
    return Path(path)


def write_reaction(path: str | os.PathLike, reactant: Sample, product: Sample) -> Path:
    return write_xyz(path, [reactant, product], ["reactant", "product"])
