"""Units: the only module that holds conversion constants.

Inside ``horm`` everything is eV, Å, eV/Å and eV/Å². Quantum-chemistry codes speak
Hartree and Bohr; convert at that boundary with the factors below (CODATA 2018,
the values ASE uses).
"""

from __future__ import annotations

from ase import units as _ase

HARTREE_TO_EV: float = float(_ase.Hartree)  # 1 Eh in eV
BOHR_TO_ANGSTROM: float = float(_ase.Bohr)  # 1 a0 in Å
ANGSTROM_TO_BOHR: float = 1.0 / BOHR_TO_ANGSTROM
EV_TO_KCAL_MOL: float = float(_ase.mol / _ase.kcal)  # 1 eV in kcal/mol
# Forces: Eh/a0 -> eV/Å ; Hessian: Eh/a0² -> eV/Å²
HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM: float = HARTREE_TO_EV / BOHR_TO_ANGSTROM
HARTREE_PER_BOHR2_TO_EV_PER_ANGSTROM2: float = HARTREE_TO_EV / BOHR_TO_ANGSTROM**2
# Electronic temperature: k_B in Eh/K (tblite takes its smearing temperature in Hartree)
KELVIN_TO_HARTREE: float = float(_ase.kB / _ase.Hartree)

# Frequencies: sqrt(eV / (Å² amu)) -> cm⁻¹
#   ω = sqrt(k/m) in s⁻¹ ; ν̃ = ω / (2π c)
_EV = 1.602176634e-19  # J
_AMU = 1.66053906660e-27  # kg
_ANG = 1e-10  # m
_C_CM = 2.99792458e10  # cm/s
import math as _math

SQRT_EV_PER_ANG2_AMU_TO_CM1: float = _math.sqrt(_EV / (_ANG**2 * _AMU)) / (2 * _math.pi * _C_CM)

UNITS = {
    "energy": "eV",
    "length": "Å",
    "forces": "eV/Å",
    "hessian": "eV/Å²",
    "frequency": "cm⁻¹",
}
