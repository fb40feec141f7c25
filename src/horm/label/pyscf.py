"""``dft`` engine: ωB97X/6-31G(d) with PySCF (CPU) or GPU4PySCF (CUDA), analytic Hessian.

What HORM did, and what we match
--------------------------------
HORM labelled its Hessians with GPU4PySCF at ωB97X/6-31G(d) (the Transition1x level).
Its per-sample settings are not published, so the defaults below were chosen by
recomputing a HORM sample and comparing (sample 83 of ``horm_sample_100.lmdb``, 8 atoms,
on 2 CPU cores; numbers in ``benchmarks/label_dft.py`` and the tests):

- ``xc="wb97x"`` (libxc HYB_GGA_XC_WB97X, ω = 0.3 a0⁻¹, the Chai–Head-Gordon 2008
  parameters, as in ORCA and GPU4PySCF; libxc 7.0 here).
- **Spherical** d shells (5D, ``cart=False``): energy within +4 meV of HORM's stored one
  and force MAE 2.2 meV/Å; Cartesian 6D is −115 meV and 6.7 meV/Å off, so HORM did
  *not* use 6D.
- Grids. PySCF and GPU4PySCF share the same defaults (level 3: Treutler–Ahlrichs radial,
  Becke partition with Treutler radii adjustment, NWChem pruning), and neither includes
  the grid-weight response in the analytic Hessian, so the Hessian carries a grid error
  that shows up mostly in the atom-diagonal 3×3 blocks and in the translational sum rule
  (Σ_B H_AB ≠ 0). HORM's Hessians carry *less* of it than PySCF's level-3 Hessian: on
  the 8-atom sample the Hessian MAE against HORM is 0.027 eV/Å² with level 3 everywhere
  (sum-rule violation 0.91 vs HORM's 0.13 eV/Å²), 0.010 with a level-4 grid for the
  Hessian's XC terms and 0.0058 with level 5 (0.0058 also with level 5 everywhere). So
  the default solves the SCF, forces and CPHF response on level 3 (``grid_level``) and
  evaluates the Hessian's XC derivative terms on level 5 (``hessian_grid_level``): the
  same accuracy as level 5 everywhere at ~25% less time. Energies do not depend on the
  level (+3.7 to +4.4 meV against HORM for levels 2–5); forces approach HORM's as the
  grid gets finer (force MAE 4.4, 2.2, 1.3, 1.1 meV/Å for levels 2, 3, 4, 5), so HORM's
  reference was computed on a finer grid than PySCF's level 3 or with a scheme whose
  grid error is smaller; its exact grid is not published.
- GPU4PySCF solves the CPHF equations on its own SG-1 grid (50, 194) by default; the GPU
  path keeps that default. PySCF (CPU) solves them on the SCF grid.
- Density fitting is **on** by default (``density_fit=True``: RI-J/K with PySCF's default
  JK-fitting basis, def2-universal-jkfit, in the SCF and the Hessian, auxiliary-basis
  response included). Measured on the 8-atom sample (1 thread, CPU seconds for SCF +
  forces + Hessian, ``benchmarks/label_dft.py``): exact integrals 274 s, DF 189 s, with
  the level-3/level-5 grids; 222 s vs 144 s with level 3 everywhere. DF changes the
  Hessian by 0.0017 eV/Å² MAE, the energy by −0.5 meV, and does not move it away from
  HORM's (Hessian MAE 0.0055 with DF vs 0.0058 exact). ``density_fit=False`` gives the
  exact-integral Hessian.
- The remaining energy offset of ~+4 meV (≈ 0.15 mEh for 42 electrons, the same for
  every grid and with density fitting) is a few float32 ulps of the stored total energy
  (1 ulp ≈ 1 meV at −8267 eV). It does not come from the grid, the basis-function type or
  density fitting; a different implementation upstream (libxc version, integral
  screening, or ORCA, which computed the Transition1x energies) is the likely source.

Units: PySCF returns Hartree, Hartree/Bohr, Hartree/Bohr²; this module converts with
:mod:`horm.units`. The Hessian is returned as computed (not symmetrised; its asymmetry,
≲1e-3 eV/Å², measures the CPHF convergence and the grid mismatch, as HORM's
stored Hessians are not symmetrised either).

Failures: a non-converged SCF (``mf.converged`` false) raises LabelError, never data. So
does an inconsistent charge/multiplicity or ``use_gpu=True`` without GPU4PySCF/CUDA.
Closed-shell singlets use RKS, everything else UKS (multiplicity = 2S+1).

Threads: by default PySCF and NumPy's BLAS use the process's thread counts
(``OMP_NUM_THREADS``, else all cores); ``threads=n`` sets both (PySCF's OpenMP through
``pyscf.lib.with_omp_threads``, BLAS through threadpoolctl) for the calculation only.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from horm.data.sample import Sample
from horm.errors import LabelError, UsageError
from horm.label.engine import LABELS, check_spin, check_want, labelled
from horm.units import (
    HARTREE_PER_BOHR2_TO_EV_PER_ANGSTROM2,
    HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM,
    HARTREE_TO_EV,
)


def gpu_available() -> bool:
    """True when GPU4PySCF is importable and CuPy sees at least one CUDA device."""
    if importlib.util.find_spec("gpu4pyscf") is None or importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - any CUDA/driver failure means "no GPU"
        return False


def _host(x) -> np.ndarray:
    """CuPy or NumPy array -> NumPy array."""
    return np.asarray(x.get() if hasattr(x, "get") and not isinstance(x, np.ndarray) else x, dtype=np.float64)


@dataclass(frozen=True)
class DftEngine:
    """RKS/UKS ωB97X/6-31G(d) energies, analytic forces and analytic Hessians."""

    xc: str = "wb97x"  # libxc functional name
    basis: str = "6-31g(d)"  # Pople 6-31G(d), spherical d unless cart=True
    cart: bool = False  # Cartesian (6D) d shells; HORM's energies match 5D
    grid_level: int = 3  # PySCF grid level (0–9) of the SCF, forces and CPHF response
    hessian_grid_level: int | None = 5  # grid of the Hessian's XC derivative terms (None: grid_level)
    density_fit: bool = True  # RI-J/K for SCF and Hessian (auxbasis below); 30% faster at equal accuracy
    auxbasis: str | None = None  # None: PySCF's default JK-fitting basis for `basis`
    conv_tol: float = 1e-10  # SCF energy convergence, Hartree (tight: the Hessian needs it)
    conv_tol_cpscf: float = 1e-8  # CPHF convergence of the Hessian response (PySCF default)
    max_cycle: int = 100  # SCF iterations before the sample is a failure
    use_gpu: bool | None = None  # None: GPU4PySCF when importable and a CUDA device exists
    threads: int | None = None  # OpenMP threads for this calculation (None: environment)
    max_memory_mb: int = 4000  # PySCF memory budget per calculation

    name = "dft"

    def __post_init__(self):
        if not 0 <= int(self.grid_level) <= 9:
            raise UsageError(f"dft grid_level={self.grid_level!r}: expected an integer 0–9")
        if self.hessian_grid_level is not None and not 0 <= int(self.hessian_grid_level) <= 9:
            raise UsageError(f"dft hessian_grid_level={self.hessian_grid_level!r}: expected None or 0–9")
        if int(self.max_cycle) < 1:
            raise UsageError(f"dft max_cycle={self.max_cycle!r}: must be >= 1")
        if self.use_gpu not in (None, True, False):
            raise UsageError(f"dft use_gpu={self.use_gpu!r}: expected one of None, True, False")
        if self.threads is not None and int(self.threads) < 1:
            raise UsageError(f"dft threads={self.threads!r}: expected None or >= 1")

    # --- Engine protocol -------------------------------------------------------------
    @property
    def level_of_theory(self) -> str:
        xc = "ωB97X" if self.xc.lower() == "wb97x" else self.xc
        basis = "6-31G(d)" if self.basis.lower().replace("*", "(d)") == "6-31g(d)" else self.basis
        extra = ", RI-JK" if self.density_fit else ""
        hl = self.grid_level if self.hessian_grid_level is None else self.hessian_grid_level
        grid = f"grid level {self.grid_level}" + (f" (Hessian XC terms {hl})" if hl != self.grid_level else "")
        return (f"{xc}/{basis} ({'6D' if self.cart else '5D'}){extra}, RKS/UKS, {grid}, "
                f"analytic Hessian (PySCF/GPU4PySCF)")

    @property
    def settings(self) -> dict[str, Any]:
        return asdict(self)

    def compute(self, sample: Sample, want: tuple[str, ...] = LABELS) -> Sample:
        """Labelled copy of ``sample`` (energy eV, forces (N,3) eV/Å, Hessian (3N,3N) eV/Å²)."""
        want = check_want(want)
        where = f"dft{f' {sample.key}' if sample.key else ''}"
        unpaired = check_spin(sample, where)
        gpu = self._resolve_gpu(where)
        if self.threads is None:
            return self._run(sample, want, unpaired, gpu, where)
        from pyscf import lib
        from threadpoolctl import threadpool_limits

        # PySCF's own OpenMP kernels and the BLAS under NumPy keep separate thread counts
        with lib.with_omp_threads(int(self.threads)), threadpool_limits(int(self.threads)):
            return self._run(sample, want, unpaired, gpu, where)

    # --- internals -------------------------------------------------------------------
    def _resolve_gpu(self, where: str) -> bool:
        if self.use_gpu is False:
            return False
        ok = gpu_available()
        if self.use_gpu and not ok:
            raise LabelError(f"{where}: use_gpu=True but GPU4PySCF or a CUDA device is not available")
        return ok

    def build(self, sample: Sample, unpaired: int, gpu: bool = False):
        """The configured (not yet run) PySCF/GPU4PySCF mean-field object for ``sample``."""
        from pyscf import dft, gto

        mol = gto.M(atom=[(int(z), tuple(map(float, p))) for z, p in zip(sample.numbers, sample.pos)],
                    unit="Angstrom", basis=self.basis, cart=self.cart, charge=int(sample.charge),
                    spin=int(unpaired), verbose=0, max_memory=int(self.max_memory_mb))
        mf = dft.RKS(mol, xc=self.xc) if unpaired == 0 else dft.UKS(mol, xc=self.xc)
        mf.grids.level = int(self.grid_level)
        mf.conv_tol = float(self.conv_tol)
        mf.conv_tol_cpscf = float(self.conv_tol_cpscf)
        mf.max_cycle = int(self.max_cycle)
        if self.density_fit:
            mf = mf.density_fit(auxbasis=self.auxbasis)
        if gpu:
            mf = mf.to_gpu()
        return mf

    def _run(self, sample: Sample, want, unpaired: int, gpu: bool, where: str) -> Sample:
        mf = self.build(sample, unpaired, gpu)
        try:
            e_tot = float(mf.kernel())
        except Exception as exc:  # noqa: BLE001 - any PySCF failure is a labelling failure
            raise LabelError(f"{where}: SCF failed: {' '.join(str(exc).split())}") from None
        if not mf.converged:
            raise LabelError(f"{where}: SCF not converged in {self.max_cycle} cycles "
                             f"(conv_tol={self.conv_tol:g} Eh)")
        forces = hessian = None
        if "forces" in want:
            grad = _host(mf.nuc_grad_method().kernel())  # (N, 3) Eh/Bohr
            forces = -grad * HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM
        if "hessian" in want:
            hobj = mf.Hessian()
            if self.hessian_grid_level is not None and self.hessian_grid_level != self.grid_level:
                grids = type(mf.grids)(mf.mol)  # PySCF or GPU4PySCF Grids, same defaults
                grids.level = int(self.hessian_grid_level)
                hobj.grids = grids  # XC second-derivative terms; the CPHF response keeps mf's grids
            h = _host(hobj.kernel())  # (N, N, 3, 3) Eh/Bohr²
            n = sample.natoms
            hessian = h.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n) * HARTREE_PER_BOHR2_TO_EV_PER_ANGSTROM2
        energy = e_tot * HARTREE_TO_EV
        if not np.isfinite(energy) or (forces is not None and not np.all(np.isfinite(forces))) \
                or (hessian is not None and not np.all(np.isfinite(hessian))):
            raise LabelError(f"{where}: PySCF returned NaN or inf")
        return labelled(sample, want, energy, forces, hessian, {"dft_gpu": int(gpu)} if gpu else None)
