"""Physical plausibility of labels: the one place that states the bounds every label check uses.

Checked on every store write (:meth:`horm.data.store.HessianStore.extend`, and so ``horm label``,
``horm data convert``), on the read before ``horm train`` and ``horm evaluate``, and by
``horm data verify --labels``. A violation is one line naming the sample. ``--allow-outliers``
(``allow_outliers=True``) lets the *outliers* through (the bounds marked "outlier" below), never
an *impossible* label: NaN, inf, or a total energy beyond any element's (``train`` refuses those,
``evaluate --allow-outliers`` skips them and says so).

==========================  ==============  =====================================================
quantity                    bound           largest in the real data (bundled xTB stores, HORM ωB97X)
==========================  ==============  =====================================================
energy, forces, Hessian     finite          — (impossible)
|E| / N                     1e7 eV          91 eV (xTB), 1033 eV (ωB97X); all-electron energies of the
                                            heaviest elements are ~1.5e6 eV per atom (impossible)
|E − Σ ref[Z]| / N          100 eV          3.4 eV (xTB train), 0.34 eV (ωB97X) (outlier)
|F| of one atom             1e4 eV/Å        29 eV/Å (xTB), 5 eV/Å (ωB97X) (outlier)
|H_ij|                      1e5 eV/Å²       307 eV/Å² (xTB), 173 eV/Å² (ωB97X) (outlier)
|ref[Z]|, fitted            1e7 eV          2046 eV (O, ωB97X) (impossible)
==========================  ==============  =====================================================

References ``ref[Z]``: there are no fixed per-element atomic energies per level of theory in
horm, so the referenced check uses references fitted by least squares on the data being read
(the training split's fit, which the model keeps; on ``evaluate`` and ``verify`` a fit on the
samples read), after the samples that fail the absolute checks are left out of the fit; a sample
holding an element without a reference (e.g. a validation molecule with an element the training
split lacks) is not checked against them. A store write has no references yet: it checks the
absolute bounds only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from horm.data.refs import fit_atom_references
from horm.errors import DataError

ENERGY_PER_ATOM_MAX = 1e7  # eV, |E| / N
REFERENCED_ENERGY_PER_ATOM_MAX = 100.0  # eV, |E − Σ ref[Z]| / N
FORCE_MAX = 1e4  # eV/Å, the norm of one atom's force
HESSIAN_MAX = 1e5  # eV/Å², one Hessian entry
REF_MAX = ENERGY_PER_ATOM_MAX  # eV, one fitted per-element reference
OVERRIDE = "--allow-outliers"


def impossible(s) -> str | None:
    """The first impossible label of sample ``s`` (NaN/inf energy, forces or Hessian; |E|/N beyond
    ``ENERGY_PER_ATOM_MAX``), or None. No override lets one through."""
    if s.energy is not None and not np.isfinite(float(s.energy)):
        return f"energy is {float(s.energy)}"
    n = max(int(len(s.numbers)), 1)
    if s.energy is not None and abs(float(s.energy)) / n > ENERGY_PER_ATOM_MAX:
        return f"|E|/N = {abs(float(s.energy)) / n:.3g} eV beyond {ENERGY_PER_ATOM_MAX:g} eV per atom"
    for name in ("forces", "hessian"):
        a = getattr(s, name)
        if a is not None and not np.all(np.isfinite(a)):
            bad = np.asarray(a)[~np.isfinite(a)].ravel()[0]
            return f"{'forces contain' if name == 'forces' else 'Hessian contains'} {bad}"
    return None


def out_of_bounds(s) -> str | None:
    """The first outlier among the forces and Hessian of ``s`` (no references needed), or None."""
    if s.forces is not None and len(s.forces):
        f = float(np.linalg.norm(np.asarray(s.forces, dtype=np.float64).reshape(-1, 3), axis=1).max())
        if f > FORCE_MAX:
            return f"|F| = {f:.3g} eV/Å on one atom, beyond {FORCE_MAX:g} eV/Å"
    if s.hessian is not None and np.size(s.hessian):
        h = float(np.abs(np.asarray(s.hessian)).max())
        if h > HESSIAN_MAX:
            return f"|H_ij| = {h:.3g} eV/Å², beyond {HESSIAN_MAX:g} eV/Å²"
    return None


def check_written(s, source: str, where: str, allow_outliers: bool = False) -> None:
    """The write check of a store: :meth:`Sample.validate`, :func:`impossible`, and (unless
    ``allow_outliers``) :func:`out_of_bounds`."""
    s.validate(source, where)
    if (p := impossible(s)):
        raise DataError(source, f"impossible label: {p}", where)
    if (p := None if allow_outliers else out_of_bounds(s)):
        raise DataError(source, f"implausible label: {p} (pass {OVERRIDE} to store it anyway)", where)


def sample_name(i: int, key: str | None) -> str:
    return f"sample {i}" + (f" ({key})" if key else "")


def check_refs(refs: dict[int, float], source: str) -> None:
    """Fitted references must be finite and within ±REF_MAX (a 1e30 eV energy gives ~1e28 eV ones)."""
    for z, e in sorted(refs.items()):
        if not np.isfinite(e) or abs(e) > REF_MAX:
            raise DataError(source, f"the per-element reference energy fitted for Z={z} is {e:.3g} eV, beyond "
                                    f"±{REF_MAX:g} eV: the energies are implausible")


@dataclass
class LabelScan:
    """One pass over samples: their problems, atom counts and compositions (for a reference fit)."""

    source: str
    indices: list[int]  # source index of each scanned sample
    keys: list[str]
    numbers: np.ndarray  # all atomic numbers, concatenated (uint8)
    ptr: np.ndarray  # (n + 1,) offsets into ``numbers``
    energy: np.ndarray  # (n,) eV, NaN where there is none
    problems: dict[int, str] = field(default_factory=dict)  # position -> first problem
    skipped: dict[int, str] = field(default_factory=dict)  # position -> impossible label (never usable)

    @property
    def natoms(self) -> np.ndarray:
        return np.diff(self.ptr)

    def name(self, pos: int) -> str:
        return sample_name(self.indices[pos], self.keys[pos])

    def fit_refs(self, positions) -> dict[int, float]:
        """Least-squares references on the samples at ``positions`` with a plausible, finite energy."""
        use = [p for p in positions if p not in self.problems and np.isfinite(self.energy[p])]
        if not use:
            return {}
        return fit_atom_references([self.numbers[self.ptr[p]:self.ptr[p + 1]] for p in use], self.energy[use])

    def add_referenced(self, refs: dict[int, float], what: str = "the fitted references") -> None:
        """Record |E − Σ ref[Z]| / N beyond its bound as problems (a sample with an element that has no
        reference is not checked: that is a question of coverage, not of its label)."""
        table = np.full(256, np.nan)
        for z, e in refs.items():
            table[int(z)] = e
        if not len(self.numbers):
            return
        offset = np.add.reduceat(table[self.numbers], self.ptr[:-1]) if len(self.ptr) > 1 else np.zeros(0)
        per_atom = np.abs(self.energy - offset) / np.maximum(self.natoms, 1)
        for p in np.flatnonzero(per_atom > REFERENCED_ENERGY_PER_ATOM_MAX):  # NaN: no energy or no reference
            if int(p) not in self.problems:
                self.problems[int(p)] = (f"|E − Σ ref[Z]|/N = {per_atom[p]:.3g} eV beyond "
                                         f"{REFERENCED_ENERGY_PER_ATOM_MAX:g} eV per atom ({what})")

    def raise_first(self, allow_outliers: bool, hint: str = OVERRIDE) -> None:
        """DataError naming the first sample with a problem (only impossible ones when ``allow_outliers``)."""
        bad = self.skipped if allow_outliers else {**self.problems, **self.skipped}
        if bad:
            p = min(bad)
            more = f"; {len(bad) - 1} more sample(s) fail the label checks" if len(bad) > 1 else ""
            what, tail = ("impossible", "") if p in self.skipped else ("implausible", f" (pass {hint} to use it anyway)")
            raise DataError(self.source, f"{what} label: {bad[p]}{tail}{more}", self.name(p))

    def outlier_lines(self) -> list[str]:
        return [f"{self.name(p)}: {msg}" for p, msg in sorted(self.problems.items()) if p not in self.skipped]


def scan_labels(source, indices=None, name: str | None = None) -> LabelScan:
    """Read every sample of ``source`` (at ``indices``) once and check its labels (no references yet)."""
    indices = list(range(len(source))) if indices is None else [int(i) for i in indices]
    numbers, ptr, energy, keys = [], [0], np.full(len(indices), np.nan), []
    scan = LabelScan(name or str(getattr(source, "path", "data")), indices, keys, np.zeros(0, np.uint8),
                     np.zeros(1, np.int64), energy)
    for pos, i in enumerate(indices):
        s = source[i]
        keys.append(s.key)
        nums = np.asarray(s.numbers, dtype=np.uint8)
        numbers.append(nums)
        ptr.append(ptr[-1] + len(nums))
        if s.energy is not None:
            energy[pos] = float(s.energy)
        bad = impossible(s)
        if bad:
            scan.skipped[pos] = scan.problems[pos] = bad
        elif (bad := out_of_bounds(s)):
            scan.problems[pos] = bad
    scan.numbers = np.concatenate(numbers) if numbers else np.zeros(0, np.uint8)
    scan.ptr = np.asarray(ptr, dtype=np.int64)
    return scan


def label_report(source, name: str | None = None) -> list[str]:
    """Every sample of ``source`` whose labels fail a check, one line each (``horm data verify
    --labels``); references fitted on all of its samples with plausible energies."""
    scan = scan_labels(source, name=name)
    scan.add_referenced(scan.fit_refs(range(len(scan.indices))), "references fitted on the whole store")
    return [f"{scan.source}: {scan.name(p)}: {'impossible' if p in scan.skipped else 'implausible'} label: {m}"
            for p, m in sorted(scan.problems.items())]
