"""pysisyphus adapter: a horm potential (or engine) as a pysisyphus ``Calculator``.

pysisyphus (J. Steinmetzer, S. Kupfer, S. Gräfe, Int. J. Quantum Chem. 121, e26390 (2021))
speaks atomic units: it passes element symbols and flat Cartesian coordinates in Bohr, and
expects ``{"energy": Eh, "forces": (3N,) Eh/Bohr, "hessian": (3N, 3N) Eh/Bohr²}`` back.
:class:`HormPysisCalculator` converts at this boundary with the constants of
:mod:`horm.units` and delegates to a :class:`~horm.calculators.potential.HormCalculator`, so the
domain check, threads, device and dtype are the calculator's. The pysisyphus ``charge`` and
``mult`` are handed to it as ``atoms.info`` (a model refuses anything but a neutral singlet;
xTB/DFT honour them).

    from pysisyphus.Geometry import Geometry
    from pysisyphus.tsoptimizers.RSPRFOptimizer import RSPRFOptimizer
    from horm.interop.pysisyphus import HormPysisCalculator

    geom = Geometry(symbols, coords_bohr, coord_type="redund")
    geom.set_calculator(HormPysisCalculator.from_file("run/model.pt"))
    RSPRFOptimizer(geom, hessian_init="calc", hessian_recalc=5).run()

Install with ``pip install horm[pysis]``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from ase import Atoms

try:
    from pysisyphus.calculators.Calculator import Calculator as _PysisCalculator
except ImportError as exc:  # pragma: no cover - depends on the optional extra
    raise ImportError(f"horm.interop.pysisyphus needs pysisyphus ({exc}); install it with: pip install horm[pysis]") \
        from None

from horm.units import BOHR_TO_ANGSTROM, HARTREE_PER_BOHR2_TO_EV_PER_ANGSTROM2, HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM, \
    HARTREE_TO_EV


class HormPysisCalculator(_PysisCalculator):
    """pysisyphus Calculator over a :class:`~horm.calculators.potential.HessianCalculator` (eV/Å inside, Eh/Bohr outside).

    ``calc``: the horm calculator; other keyword arguments go to pysisyphus' ``Calculator``
    (``charge``, ``mult``, ``out_dir``: default ``"."`` so nothing new is created).
    """

    def __init__(self, calc, **kwargs):
        kwargs.setdefault("out_dir", ".")
        super().__init__(**kwargs)
        if not hasattr(calc, "get_hessian"):
            raise TypeError(f"HormPysisCalculator needs a horm HessianCalculator, got {type(calc).__name__}")
        self.horm_calc = calc

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: Any = "cpu", dtype: Any = "float64",
                  threads: int | None = None, **kwargs) -> "HormPysisCalculator":
        """Over a trained model file (see :meth:`horm.calculators.potential.HormCalculator.from_file`)."""
        from horm.calculators.potential import HormCalculator

        return cls(HormCalculator.from_file(path, device=device, dtype=dtype, threads=threads), **kwargs)

    @classmethod
    def from_spec(cls, spec: str, **kwargs) -> "HormPysisCalculator":
        """Over ``"xtb"``, ``"dft"`` or a model path (:func:`horm.calculators.potential.load_potential`)."""
        from horm.calculators.potential import load_potential

        return cls(load_potential(spec), **kwargs)

    def _atoms(self, atoms, coords) -> Atoms:
        pos = np.asarray(coords, dtype=np.float64).reshape(-1, 3) * BOHR_TO_ANGSTROM
        a = Atoms(symbols=[str(s).capitalize() for s in atoms], positions=pos)
        a.info["charge"], a.info["multiplicity"] = int(self.charge), int(self.mult)
        return a

    def _ef(self, a: Atoms) -> dict[str, Any]:
        a.calc = self.horm_calc
        energy = float(a.get_potential_energy()) / HARTREE_TO_EV
        forces = np.asarray(a.get_forces(), dtype=np.float64).reshape(-1) / HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM
        return {"energy": energy, "forces": forces}

    def get_energy(self, atoms, coords, **prepare_kwargs) -> dict[str, Any]:
        """``{"energy": Eh}`` (forces come along: the calculator computes both at once)."""
        self.calc_counter += 1
        return self._ef(self._atoms(atoms, coords))

    def get_forces(self, atoms, coords, **prepare_kwargs) -> dict[str, Any]:
        """``{"energy": Eh, "forces": (3N,) Eh/Bohr}``."""
        self.calc_counter += 1
        return self._ef(self._atoms(atoms, coords))

    def get_hessian(self, atoms, coords, **prepare_kwargs) -> dict[str, Any]:
        """``{"energy": Eh, "forces": (3N,) Eh/Bohr, "hessian": (3N, 3N) Eh/Bohr²}``."""
        self.calc_counter += 1
        a = self._atoms(atoms, coords)
        h = self.horm_calc.get_hessian(a) / HARTREE_PER_BOHR2_TO_EV_PER_ANGSTROM2  # sets energy/forces too
        return {**self._ef(a), "hessian": h}
