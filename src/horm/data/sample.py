"""Sample: one (optionally labelled) geometry, in numpy, in horm units.

Every reader returns Samples and every writer takes them, so validation lives here:
shapes, finiteness, known elements, and atoms not closer than ``MIN_DISTANCE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from ase.data import atomic_masses, chemical_symbols

from horm.errors import DataError

MIN_DISTANCE = 0.5  # Å; closer atoms are rejected as unphysical
MAX_Z = 118
MAX_ATOMS = 10_000  # atoms per sample; larger inputs are refused (a Hessian would be >= 3.6 GB)
MAX_COORD = 1e4  # Å; a coordinate beyond ±MAX_COORD is refused (no molecule spans 10 µm)


def symbols_to_numbers(symbols, source: str = "<input>", where: str | None = None) -> np.ndarray:
    """Map element symbols (case-insensitive) or numbers to atomic numbers; unknown ones raise."""
    out = []
    for s in symbols:
        if isinstance(s, (int, np.integer)):
            z = int(s)
        else:
            t = str(s).strip()
            if t.isdigit():
                z = int(t)
            else:
                t = t[:1].upper() + t[1:].lower()
                if t not in chemical_symbols or t == "X":
                    raise DataError(source, f"unknown element {s!r}", where)
                z = chemical_symbols.index(t)
        if not 1 <= z <= MAX_Z:
            raise DataError(source, f"unknown element with atomic number {z}", where)
        out.append(z)
    return np.asarray(out, dtype=np.int64)


SPIN_KEYS = ("multiplicity", "mult", "spin_multiplicity")  # names of 2S+1 in xyz comments / ASE info


def strict_int(value, name: str, src: str, where: str) -> int:
    """An integer charge or multiplicity: ``1``, ``-1``, ``"+2"``; anything else (``1.0``,
    ``1.5``, ``"two"``, ``True``) is a DataError naming the file and frame."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    text = str(value).strip()
    if isinstance(value, str) and text.lstrip("+-").isdigit() and text.lstrip("+-").isascii():
        return int(text)
    raise DataError(src, f"{name}={str(value)[:20]!r} is not an integer", where)


def check_positions(pos: np.ndarray, source: str = "<input>", where: str | None = None) -> None:
    """Raise DataError (one line, naming the atom) unless every coordinate is finite and within
    ±:data:`MAX_COORD` Å; a k-d tree or a path interpolation overflows on 1e300."""
    pos = np.asarray(pos, dtype=np.float64)
    bad = ~np.isfinite(pos)
    if bad.any():
        a = int(np.argwhere(bad)[0][0])
        raise DataError(source, f"pos contains NaN or inf (atom {a})", where)
    far = np.abs(pos) > MAX_COORD
    if far.any():
        a, c = (int(x) for x in np.argwhere(far)[0])
        raise DataError(source, f"coordinate {pos[a, c]:.3g} Å of atom {a} is beyond the bound of "
                                f"±{MAX_COORD:g} Å", where)


def closest_pair_below(pos: np.ndarray, cutoff: float) -> tuple[int, int, float] | None:
    """The closest pair of atoms nearer than ``cutoff`` (Å) as (i, j, distance), else None.

    A k-d tree query: memory grows with the number of close pairs, not with N².
    """
    from scipy.spatial import cKDTree

    pos = np.asarray(pos, dtype=np.float64)
    pairs = cKDTree(pos).query_pairs(cutoff, output_type="ndarray")
    if len(pairs) == 0:
        return None
    d = np.linalg.norm(pos[pairs[:, 0]] - pos[pairs[:, 1]], axis=1)
    k = int(np.argmin(d))
    return (int(pairs[k, 0]), int(pairs[k, 1]), float(d[k])) if d[k] < cutoff else None


@dataclass
class Sample:
    """One geometry with optional labels.

    numbers: (N,) int atomic numbers; pos: (N, 3) Å; energy: total energy, eV;
    forces: (N, 3) eV/Å; hessian: (3N, 3N) eV/Å², row-major over (atom, xyz).
    ``extras`` carries optional per-sample arrays (e.g. HORM's ``ae``, ``freq``).
    """

    numbers: np.ndarray
    pos: np.ndarray
    energy: float | None = None
    forces: np.ndarray | None = None
    hessian: np.ndarray | None = None
    charge: int = 0
    multiplicity: int = 1
    rxn: str = ""
    origin: str = ""
    key: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def natoms(self) -> int:
        return int(len(self.numbers))

    @property
    def symbols(self) -> list[str]:
        return [chemical_symbols[int(z)] for z in self.numbers]

    @property
    def masses(self) -> np.ndarray:
        return atomic_masses[np.asarray(self.numbers)]

    @property
    def formula(self) -> str:
        from collections import Counter

        c = Counter(self.symbols)
        return "".join(f"{el}{c[el] if c[el] > 1 else ''}" for el in sorted(c))

    def geometry_hash(self) -> str:
        """16 hex digits of SHA-256 over numbers, positions (float64), charge and multiplicity."""
        import hashlib

        h = hashlib.sha256(np.asarray(self.numbers, dtype="<i8").tobytes())
        h.update(np.ascontiguousarray(self.pos, dtype="<f8").tobytes())
        h.update(f"q={int(self.charge)} m={int(self.multiplicity)}".encode())
        return h.hexdigest()[:16]

    def has(self, name: str) -> bool:
        return getattr(self, name, None) is not None

    def copy(self, **changes) -> "Sample":
        return replace(self, **changes)

    def validate(self, source: str = "<sample>", where: str | None = None,
                 min_distance: float = MIN_DISTANCE) -> "Sample":
        """Check shapes, finiteness, elements and distances; raise DataError (one line) if bad."""
        numbers = np.asarray(self.numbers)
        if numbers.ndim != 1 or numbers.size == 0:
            raise DataError(source, f"numbers must be a non-empty 1-D array, got shape {numbers.shape}", where)
        if not np.issubdtype(numbers.dtype, np.integer):
            raise DataError(source, f"numbers must be integers, got {numbers.dtype}", where)
        bad = numbers[(numbers < 1) | (numbers > MAX_Z)]
        if bad.size:
            raise DataError(source, f"unknown element with atomic number {int(bad[0])}", where)
        n = numbers.size
        if n > MAX_ATOMS:
            raise DataError(source, f"{n} atoms exceed the limit of {MAX_ATOMS} per sample", where)
        pos = np.asarray(self.pos)
        if pos.shape != (n, 3):
            raise DataError(source, f"pos has shape {pos.shape}, expected ({n}, 3)", where)
        check_positions(pos, source, where)
        if self.energy is not None and not np.isfinite(float(self.energy)):
            raise DataError(source, "energy is NaN or inf", where)
        if self.forces is not None:
            f = np.asarray(self.forces)
            if f.shape != (n, 3):
                raise DataError(source, f"forces have shape {f.shape}, expected ({n}, 3)", where)
            if not np.all(np.isfinite(f)):
                raise DataError(source, "forces contain NaN or inf", where)
        if self.hessian is not None:
            h = np.asarray(self.hessian)
            if h.shape != (3 * n, 3 * n):
                raise DataError(source, f"Hessian has shape {h.shape}, expected ({3 * n}, {3 * n}) for {n} atoms", where)
            if not np.all(np.isfinite(h)):
                raise DataError(source, "Hessian contains NaN or inf", where)
        for k, v in self.extras.items():
            a = np.asarray(v)
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                raise DataError(source, f"extra field {k!r} contains NaN or inf", where)
        if n > 1 and min_distance > 0:
            close = closest_pair_below(pos, min_distance)
            if close is not None:
                i, j, d = close
                raise DataError(source, f"atoms {i} and {j} are {d:.3f} Å apart (< {min_distance} Å)", where)
        for name in ("charge", "multiplicity"):
            v = getattr(self, name)
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise DataError(source, f"{name} must be an integer, got {v!r:.40}", where)
        if int(self.multiplicity) < 1:
            raise DataError(source, f"multiplicity must be >= 1, got {self.multiplicity}", where)
        return self

    # ASE interop -----------------------------------------------------------------
    def to_atoms(self):
        """ASE Atoms with energy/forces attached through a SinglePointCalculator when present."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator

        atoms = Atoms(numbers=np.asarray(self.numbers), positions=np.asarray(self.pos, dtype=float))
        atoms.info.update({"charge": int(self.charge), "multiplicity": int(self.multiplicity)})
        if self.rxn:
            atoms.info["rxn"] = self.rxn
        if self.origin:
            atoms.info["origin"] = self.origin
        if self.energy is not None or self.forces is not None:
            kw = {}
            if self.energy is not None:
                kw["energy"] = float(self.energy)
            if self.forces is not None:
                kw["forces"] = np.asarray(self.forces, dtype=float)
            atoms.calc = SinglePointCalculator(atoms, **kw)
        if self.hessian is not None:
            atoms.info["hessian"] = np.asarray(self.hessian)
        return atoms

    @classmethod
    def from_atoms(cls, atoms, **kw) -> "Sample":
        energy = forces = None
        if atoms.calc is not None:
            res = getattr(atoms.calc, "results", {})
            energy = res.get("energy")
            forces = res.get("forces")
        info = atoms.info
        return cls(
            numbers=np.asarray(atoms.numbers, dtype=np.int64),
            pos=np.asarray(atoms.positions, dtype=np.float64),
            energy=None if energy is None else float(energy),
            forces=None if forces is None else np.asarray(forces, dtype=np.float64),
            hessian=info.get("hessian"),
            charge=int(info.get("charge", 0)),
            multiplicity=int(info.get("multiplicity", 1)),
            rxn=str(info.get("rxn", "")),
            origin=str(info.get("origin", "")),
            **kw,
        )
