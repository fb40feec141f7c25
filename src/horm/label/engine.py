"""Engine protocol: one geometry in, a labelled copy out (energy, forces, Hessian).

Every labelling engine (``xtb``: GFN2-xTB through tblite; ``dft``: ωB97X/6-31G(d) through
PySCF or GPU4PySCF) implements :class:`Engine`:

- ``compute(sample, want=("energy", "forces", "hessian")) -> Sample``: a *copy* of
  ``sample`` with the requested labels in horm units: energy eV, forces (N, 3) eV/Å
  (= −∂E/∂r), Hessian (3N, 3N) eV/Å² (= ∂²E/∂r², index 3·atom + xyz). Labels that were
  not requested are ``None`` in the copy, so labels from another level of theory never
  leak through. ``sample.charge`` and ``sample.multiplicity`` are honoured.
- ``name``: the registry name (``"xtb"``, ``"dft"``).
- ``level_of_theory``: a human-readable string that names method, code and how the
  Hessian is obtained; stores refuse to mix labels whose strings differ.
- ``settings``: a plain dict (JSON/msgpack-able) of every option, recorded in the store's
  metadata.

An engine that cannot produce trustworthy labels (SCF not converged, charge and
multiplicity inconsistent with the electron count) raises :class:`horm.errors.LabelError`
with a one-line reason; it never returns data it does not trust.

Engines are shipped to process-pool and Ray workers, so they must pickle cheaply: they
hold only their settings and build heavy objects (calculators, PySCF molecules) inside
``compute``.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable, get_args

import numpy as np

from horm.data.sample import Sample
from horm.errors import LabelError, UsageError

Label = Literal["energy", "forces", "hessian"]
LABELS: tuple[str, ...] = get_args(Label)
EngineName = Literal["xtb", "dft"]
ENGINE_NAMES: tuple[str, ...] = get_args(EngineName)


@runtime_checkable
class Engine(Protocol):
    """What a labelling engine offers (see the module docstring)."""

    name: str

    @property
    def level_of_theory(self) -> str: ...

    @property
    def settings(self) -> dict[str, Any]: ...

    def compute(self, sample: Sample, want: tuple[str, ...] = LABELS) -> Sample: ...


def check_want(want) -> tuple[str, ...]:
    """Normalise ``want`` to a tuple of label names; ValueError lists the valid ones."""
    if isinstance(want, str):
        want = (want,)
    want = tuple(want)
    bad = [w for w in want if w not in LABELS]
    if bad or not want:
        raise UsageError(f"want={want!r}: expected a non-empty subset of {', '.join(LABELS)}")
    return want


def n_electrons(sample: Sample) -> int:
    """Number of electrons of ``sample`` (Σ Z − charge)."""
    return int(np.sum(np.asarray(sample.numbers))) - int(sample.charge)


def check_spin(sample: Sample, source: str) -> int:
    """Return the number of unpaired electrons (multiplicity − 1).

    Raises LabelError when charge and multiplicity do not fit the electron count
    (e.g. an odd number of electrons with multiplicity 1).
    """
    nel = n_electrons(sample)
    mult = int(sample.multiplicity)
    if mult < 1:
        raise LabelError(f"{source}: multiplicity must be >= 1, got {mult}")
    unpaired = mult - 1
    if nel < 0 or unpaired > nel or (nel - unpaired) % 2:
        raise LabelError(f"{source}: {nel} electrons (charge {int(sample.charge)}) "
                         f"cannot have multiplicity {mult}")
    return unpaired


def resolve_spin(sample: Sample, charge: int | None = None, multiplicity: int | None = None) -> str | None:
    """Apply a user's ``charge``/``multiplicity`` (None: keep what the file said) to ``sample``.

    With no multiplicity given and an odd electron count at multiplicity 1 (the default of
    a file that says nothing), the sample becomes a doublet; the returned note says so
    (None otherwise). An explicit multiplicity is never changed: a wrong one fails later in
    :func:`check_spin` with one line.
    """
    if charge is not None:
        sample.charge = int(charge)
    if multiplicity is not None:
        if int(multiplicity) < 1:
            raise UsageError(f"multiplicity must be >= 1, got {multiplicity}")
        sample.multiplicity = int(multiplicity)
        return None
    nel = n_electrons(sample)
    if nel % 2 and int(sample.multiplicity) == 1:
        sample.multiplicity = 2
        return (f"{nel} electrons (charge {int(sample.charge)}) and no multiplicity given: "
                f"computed as a doublet (multiplicity 2)")
    return None


def labelled(sample: Sample, want: tuple[str, ...], energy: float | None,
             forces: np.ndarray | None, hessian: np.ndarray | None,
             extras: dict[str, Any] | None = None) -> Sample:
    """Copy of ``sample`` carrying exactly the requested labels (others set to None)."""
    ex = dict(sample.extras)
    if extras:
        ex.update(extras)
    return sample.copy(
        energy=float(energy) if "energy" in want and energy is not None else None,
        forces=np.asarray(forces, dtype=np.float64) if "forces" in want and forces is not None else None,
        hessian=np.asarray(hessian, dtype=np.float64) if "hessian" in want and hessian is not None else None,
        extras=ex,
    )
