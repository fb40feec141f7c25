"""ASE calculators that also give Hessians: the one interface every TS-search stage uses.

``HessianCalculator`` is an ASE ``Calculator`` (energy in eV, forces in eV/Å) with one
extra method, ``get_hessian(atoms) -> (3N, 3N)`` in eV/Å², index 3·atom + xyz, symmetric.
It has the signature of Sella's ``hessian_function``, so a TS optimisation can pass
``hessian_function=calc.get_hessian`` and have the model Hessian recomputed as often as
it likes. Each calculator counts its evaluations (``counts``) so that the workflow can
report model calls per stage.

``HormCalculator`` wraps either

- a horm Potential (``model(batch, compute_forces=True, compute_hessian=False) -> dict``
  with ``energy`` [B], ``forces`` [N, 3] and, when asked, ``hessian``: a list of
  per-molecule blocks or their flat concatenation; a model with a direct Hessian head
  returns that head's prediction here), or
- a labelling Engine (``engine.compute(sample, want=(...)) -> labelled Sample``), e.g.
  GFN2-xTB or ωB97X/6-31G(d).

``load_potential(spec)`` turns one string (``"xtb"``, ``"dft"``, or a trained model file or
run folder, read by :func:`horm.train.export.load_model`) into a ``HormCalculator``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from horm.data.sample import Sample
from horm.errors import HormError, UsageError

ENGINE_SPECS = ("xtb", "dft")
"""Potential specs that name a labelling engine rather than a checkpoint."""


class HessianCalculator(Calculator):
    """Base class: an ASE calculator with ``get_hessian`` and evaluation counters.

    Subclasses implement ``evaluate(atoms, hessian: bool) -> dict`` returning ``energy``
    (float, eV), ``forces`` ((N, 3), eV/Å) and, if ``hessian``, ``hessian`` ((3N, 3N),
    eV/Å²). ``counts`` holds ``{"energy_forces": n, "hessian": m}``: one call that returns
    a Hessian counts once, under ``hessian``.
    """

    implemented_properties = ["energy", "forces"]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.counts = {"energy_forces": 0, "hessian": 0}
        self._hessian_cache: tuple[np.ndarray, np.ndarray] | None = None

    # -- to implement --------------------------------------------------------------
    def evaluate(self, atoms, hessian: bool) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    # -- ASE contract --------------------------------------------------------------
    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        out = self.evaluate(self.atoms, hessian=False)
        self.counts["energy_forces"] += 1
        self.results = {"energy": float(out["energy"]),
                        "forces": np.asarray(out["forces"], dtype=float).reshape(-1, 3)}

    def get_hessian(self, atoms=None) -> np.ndarray:
        """Hessian d²E/dr² at ``atoms``, (3N, 3N) eV/Å², symmetrised as (H + Hᵀ)/2.

        Energy and forces computed alongside are stored as the calculator's current
        results, so a following ``get_forces`` at the same geometry costs nothing.
        """
        if atoms is None:
            atoms = self.atoms
        pos = np.array(atoms.positions, dtype=float)
        if self._hessian_cache is not None and np.array_equal(self._hessian_cache[0], pos):
            return self._hessian_cache[1].copy()
        out = self.evaluate(atoms, hessian=True)
        self.counts["hessian"] += 1
        n3 = 3 * len(atoms)
        h = np.asarray(out["hessian"], dtype=float).reshape(n3, n3)
        h = 0.5 * (h + h.T)
        self._hessian_cache = (pos, h)
        self.atoms = atoms.copy()
        self.results = {"energy": float(out["energy"]),
                        "forces": np.asarray(out["forces"], dtype=float).reshape(-1, 3)}
        return h.copy()

    def total_calls(self) -> int:
        return int(self.counts["energy_forces"] + self.counts["hessian"])


def _sample_of(atoms) -> Sample:
    return Sample(numbers=np.asarray(atoms.numbers, dtype=np.int64),
                  pos=np.array(atoms.positions, dtype=np.float64),
                  charge=int(atoms.info.get("charge", 0)),
                  multiplicity=int(atoms.info.get("multiplicity", 1)))


def _hessian_block(h, n3: int):
    """First molecule's (3n, 3n) block from a model's ``hessian`` output (list, flat or 2-D)."""
    if isinstance(h, (list, tuple)):
        h = h[0]
    h = h.detach().cpu().double().numpy() if hasattr(h, "detach") else np.asarray(h, dtype=float)
    if h.size < n3 * n3:
        raise HormError(f"model returned a Hessian with {h.size} entries, expected {n3 * n3}")
    return h.reshape(-1)[: n3 * n3].reshape(n3, n3)


class HormCalculator(HessianCalculator):
    """ASE calculator over a horm Potential (torch model) or a labelling Engine.

    potential: a Potential module or an Engine (anything with ``compute``).
    device, dtype: where and in which float type a Potential runs (default: the model's
    own parameter dtype, float64 when it has none).
    name: a label for records (e.g. "xtb" or the checkpoint path).
    """

    def __init__(self, potential, device: str = "cpu", dtype=None, name: str = "", **kwargs):
        super().__init__(**kwargs)
        self.potential = potential
        self.potential_name = name or type(potential).__name__
        self.is_engine = hasattr(potential, "compute")
        self.device = device
        self.dtype = dtype
        if not self.is_engine:
            import torch

            if self.dtype is None:
                params = list(potential.parameters()) if hasattr(potential, "parameters") else []
                self.dtype = params[0].dtype if params else torch.float64
            if hasattr(potential, "to"):
                potential.to(device)
            if hasattr(potential, "eval"):
                potential.eval()

    def evaluate(self, atoms, hessian: bool) -> dict[str, Any]:
        if self.is_engine:
            return self._evaluate_engine(atoms, hessian)
        return self._evaluate_potential(atoms, hessian)

    def _evaluate_engine(self, atoms, hessian: bool) -> dict[str, Any]:
        want = ("energy", "forces", "hessian") if hessian else ("energy", "forces")
        s = self.potential.compute(_sample_of(atoms), want=want)
        out = {"energy": float(s.energy), "forces": np.asarray(s.forces, dtype=float)}
        if hessian:
            if s.hessian is None:
                raise HormError(f"{self.potential_name}: engine returned no Hessian")
            out["hessian"] = np.asarray(s.hessian, dtype=float)
        return out

    def _evaluate_potential(self, atoms, hessian: bool) -> dict[str, Any]:
        import torch

        from horm.data.batch import collate

        batch = collate([_sample_of(atoms)], dtype=self.dtype).to(self.device)
        with torch.enable_grad():
            res = self.potential(batch, compute_forces=True, compute_hessian=hessian)
        out = {"energy": float(res["energy"].reshape(-1)[0].detach().cpu()),
               "forces": res["forces"].detach().cpu().double().numpy().reshape(-1, 3)}
        if hessian:
            if res.get("hessian") is None:
                raise HormError(f"{self.potential_name}: model returned no Hessian with compute_hessian=True")
            out["hessian"] = _hessian_block(res["hessian"], 3 * len(atoms))
        return out


def load_potential(spec: str, device: str = "cpu", dtype: str = "float64") -> HormCalculator:
    """One line from a spec to a calculator: ``"xtb"``, ``"dft"``, or a trained model
    (``model.pt``, a ``horm train`` checkpoint, or its run folder).

    A model runs in ``dtype`` (default float64: Sella's convergence tests and the
    Eckart-projected frequencies near the −10 cm⁻¹ threshold then see no float32 noise).
    Raises ValueError for a spec that is neither a known engine nor an existing path, and
    HormError (DataError) when the file cannot be loaded.
    """
    spec = str(spec).strip()
    if spec in ENGINE_SPECS:
        from horm.label import get_engine

        return HormCalculator(get_engine(spec), name=spec)
    path = Path(spec)
    if not path.exists():
        raise UsageError(f"potential {spec!r}: expected one of {', '.join(ENGINE_SPECS)} "
                         f"or the path of a trained model (no such file or folder)")
    import torch

    from horm.train.export import load_model

    valid = ("float64", "float32")
    if dtype not in valid:
        raise UsageError(f"dtype {dtype!r}: expected one of {', '.join(valid)}")
    model, info = load_model(path, device=device, dtype=getattr(torch, dtype))
    return HormCalculator(model, device=device, dtype=getattr(torch, dtype), name=str(path))
