"""horm's potentials as ASE calculators with Hessians (the interface of :mod:`horm.calculators.base`).

``HessianCalculator`` (re-exported here from :mod:`horm.calculators.base`) is an ASE
``Calculator`` with ``get_hessian(atoms) -> (3N, 3N)`` in eV/Å² and call counters.

``HormCalculator`` wraps either

- a horm Potential (``model(batch, compute_forces=True, compute_hessian=False) -> dict``
  with ``energy`` [B], ``forces`` [N, 3] and, when asked, ``hessian``: a list of
  per-molecule blocks or their flat concatenation; a model with a direct Hessian head
  returns that head's prediction here), or
- a labelling Engine (``engine.compute(sample, want=(...)) -> labelled Sample``), e.g.
  GFN2-xTB or ωB97X/6-31G(d).

``HormCalculator.from_file(path)`` loads a trained model file or run folder (read by
:func:`horm.models.files.load_model`); ``load_potential(spec)`` turns one string (``"xtb"``,
``"dft"``, a shipped name, such a path, or ``ase:module:factory`` for any ASE calculator) into a
calculator. Both take ``device``, ``dtype`` and
``threads`` (:mod:`horm.runtime`) and check the model's domain (:mod:`horm.models.domain`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from horm.calculators.base import HessianCalculator
from horm.data.sample import Sample
from horm.errors import HormError, UsageError
from horm.models.domain import charge_and_multiplicity, check_structure

__all__ = ["ENGINE_SPECS", "HessianCalculator", "HormCalculator", "load_potential"]

ENGINE_SPECS = ("xtb", "dft")
"""Potential specs that name a labelling engine rather than a checkpoint."""


def _sample_of(atoms) -> Sample:
    charge, mult = charge_and_multiplicity(atoms)
    return Sample(numbers=np.asarray(atoms.numbers, dtype=np.int64),
                  pos=np.array(atoms.positions, dtype=np.float64), charge=charge, multiplicity=mult)


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

    potential: a Potential module or an Engine (anything with ``compute``); to load a model
    file use :meth:`from_file`.
    device: "cpu", "cuda", "cuda:N" or "auto"; dtype: "float32", "float64", a torch.dtype,
    or None for the model's own parameter dtype (float64 when it has none).
    threads: intra-op threads per evaluation (torch, BLAS, OpenMP); None = auto, one thread
    below 50 atoms (:mod:`horm.runtime`).
    elements: atomic numbers the model was trained on (None: those with a fitted reference
    energy, if any). check_domain: refuse, with one DomainError line, other elements,
    periodic cells and non-default charge/multiplicity (:mod:`horm.models.domain`); engines
    are checked for periodic cells only, since they honour charge and multiplicity.
    name: a label for records (e.g. "xtb" or the checkpoint path).
    """

    def __init__(self, potential, device: Any = "cpu", dtype: Any = None, name: str = "",
                 threads: int | None = None, elements=None, check_domain: bool = True,
                 level_of_theory: str = "unknown", **kwargs):
        if isinstance(potential, (str, os.PathLike)):
            raise TypeError(f"HormCalculator takes a potential object, not the path {str(potential)!r}; "
                            f"use HormCalculator.from_file(path) (or horm.load_potential for 'xtb'/'dft')")
        if not (hasattr(potential, "compute") or callable(potential)):
            raise TypeError(f"HormCalculator takes a horm Potential or an Engine, got {type(potential).__name__}")
        super().__init__(**kwargs)
        from horm.runtime import check_threads, resolve_device, resolve_dtype

        self.potential = potential
        self.potential_name = name or type(potential).__name__
        self.is_engine = hasattr(potential, "compute")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.threads = check_threads(threads)
        self.check_domain = bool(check_domain)
        self.level_of_theory = level_of_theory
        self.elements = sorted(int(z) for z in elements) if elements is not None else None
        if not self.is_engine:
            import torch

            if self.dtype is None:
                params = list(potential.parameters()) if hasattr(potential, "parameters") else []
                self.dtype = params[0].dtype if params else torch.float64
            if self.elements is None and hasattr(potential, "atom_ref"):
                self.elements = torch.nonzero(potential.atom_ref).flatten().tolist() or None
            if hasattr(potential, "to"):  # in place for a torch module: weights and inputs share device and dtype
                potential.to(device=self.device, dtype=self.dtype)
            if hasattr(potential, "eval"):
                potential.eval()

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: Any = "cpu", dtype: Any = "float64",
                  threads: int | None = None, check_domain: bool = True) -> "HormCalculator":
        """Calculator over a trained model (``model.pt``, a ``horm train`` checkpoint or run folder).

        dtype defaults to float64 (Sella's convergence tests and Eckart-projected frequencies
        near the −10 cm⁻¹ threshold then see no float32 noise); None keeps the trained precision.
        """
        from horm.models.files import load_model

        model, info = load_model(path, device=device, dtype=dtype)
        return cls(model, device=device, dtype=next(model.parameters()).dtype, name=str(path), threads=threads,
                   elements=info["elements"], check_domain=check_domain, level_of_theory=info["level_of_theory"])

    @property
    def is_reference(self) -> bool:
        return self.is_engine

    def evaluate(self, atoms, hessian: bool) -> dict[str, Any]:
        from horm.runtime import thread_limit, threads_for

        if self.check_domain:
            check_structure(atoms, None if self.is_engine else self.elements, self.potential_name,
                            electronic_state=not self.is_engine)
        with thread_limit(threads_for(self.potential, self.threads, len(atoms))):
            if self.is_engine:
                return self._evaluate_engine(atoms, hessian)
            return self._evaluate_potential(atoms, hessian)

    def evaluate_many(self, atoms_list) -> list[dict[str, Any]] | None:
        """One batched forward (and force backward) of a torch model over ``atoms_list``; None
        for engines (xTB, DFT), which have no batch."""
        if self.is_engine or not atoms_list:
            return None
        import torch

        from horm.data.batch import collate
        from horm.runtime import thread_limit, threads_for

        if self.check_domain:
            for a in atoms_list:
                check_structure(a, self.elements, self.potential_name, electronic_state=True)
        batch = collate([_sample_of(a) for a in atoms_list], dtype=self.dtype).to(self.device)
        with thread_limit(threads_for(self.potential, self.threads, len(atoms_list[0]))), torch.enable_grad():
            res = self.potential(batch, compute_forces=True, compute_hessian=False)
        e = res["energy"].reshape(-1).detach().cpu().double().numpy()
        f = res["forces"].detach().cpu().double().numpy().reshape(-1, 3)
        ptr = batch.ptr.tolist()
        return [{"energy": float(e[i]), "forces": f[ptr[i]:ptr[i + 1]].copy()} for i in range(len(atoms_list))]

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


def load_potential(spec: str, device: Any = "cpu", dtype: Any = "float64", threads: int | None = None,
                   check_domain: bool = True, kwargs: dict | None = None) -> HessianCalculator:
    """One line from a spec to a calculator: ``"xtb"``, ``"dft"``, a shipped model's name
    (:mod:`horm.pretrained`), a trained model (``model.pt``, a ``horm train`` checkpoint, or
    its run folder; see :meth:`HormCalculator.from_file`) or any ASE calculator,
    ``"ase:package.module:factory"`` called with ``kwargs``
    (:mod:`horm.calculators.ase_adapter`).

    Raises ValueError for a spec that is neither a known engine nor an existing path, and
    HormError (DataError) when the file cannot be loaded.
    """
    from horm.runtime import resolve_dtype

    spec = str(spec).strip()
    if spec.startswith("ase:"):
        from horm.calculators.ase_adapter import load_ase_spec

        return load_ase_spec(spec, kwargs)
    if kwargs:
        raise UsageError(f"potential {spec!r}: calculator keyword arguments are only for ase:module:factory specs")
    dtype = resolve_dtype(dtype)
    if spec in ENGINE_SPECS:
        from horm.label import get_engine

        engine = get_engine(spec)
        if threads is not None and hasattr(engine, "threads"):  # dft: the engine sets its own threads
            engine = get_engine(spec, threads=threads)
        return HormCalculator(engine, name=spec, threads=threads, check_domain=check_domain)
    from horm.pretrained import NAMES, is_name

    if not Path(spec).exists() and not is_name(spec):
        raise UsageError(f"potential {spec!r}: expected one of {', '.join(ENGINE_SPECS)}, a shipped model "
                         f"({', '.join(NAMES)}), the path of a trained model (no such file or folder) "
                         f"or ase:package.module:factory")
    return HormCalculator.from_file(spec, device=device, dtype=dtype, threads=threads, check_domain=check_domain)
