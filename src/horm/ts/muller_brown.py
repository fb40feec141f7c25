"""Müller–Brown surface as a one-atom toy potential for the TS machinery.

K. Müller and L. D. Brown, Theor. Chim. Acta 53, 75 (1979). The surface is

    V(x, y) = Σ_k A_k exp(a_k (x − x0_k)² + b_k (x − x0_k)(y − y0_k) + c_k (y − y0_k)²)

with the original parameters. Here one atom moves on it: x, y are its Cartesian x, y
in Å, V is taken in eV (times ``scale``), and a harmonic term ½·k_z·z² keeps the atom
in the plane (it adds one positive Hessian eigenvalue, so stationary points keep their
order). Known stationary points (x, y; V) in the original units:

- minima: A (−0.558, 1.442; −146.70), B (0.623, 0.028; −108.17), C (−0.050, 0.467; −80.77)
- saddles: S1 (−0.822, 0.624; −40.66) between A and C, S2 (0.212, 0.293; −72.25) between C and B
"""

from __future__ import annotations

import numpy as np

from horm.calculators.potential import HessianCalculator

_A = np.array([-200.0, -100.0, -170.0, 15.0])
_a = np.array([-1.0, -1.0, -6.5, 0.7])
_b = np.array([0.0, 0.0, 11.0, 0.6])
_c = np.array([-10.0, -10.0, -6.5, 0.7])
_X0 = np.array([1.0, 0.0, -0.5, -1.0])
_Y0 = np.array([0.0, 0.5, 1.5, 1.0])

MINIMA = {"A": (-0.558224, 1.441726), "B": (0.623499, 0.028038), "C": (-0.050011, 0.466694)}
SADDLES = {"S1": (-0.822002, 0.624313), "S2": (0.212487, 0.292988)}


def muller_brown(x: float, y: float) -> tuple[float, np.ndarray, np.ndarray]:
    """V, gradient (2,) and Hessian (2, 2) of the Müller–Brown surface at (x, y)."""
    dx, dy = x - _X0, y - _Y0
    e = _A * np.exp(_a * dx**2 + _b * dx * dy + _c * dy**2)
    px = 2 * _a * dx + _b * dy  # d(exponent)/dx
    py = _b * dx + 2 * _c * dy  # d(exponent)/dy
    v = float(e.sum())
    g = np.array([(e * px).sum(), (e * py).sum()])
    hxx = (e * (px**2 + 2 * _a)).sum()
    hyy = (e * (py**2 + 2 * _c)).sum()
    hxy = (e * (px * py + _b)).sum()
    return v, g, np.array([[hxx, hxy], [hxy, hyy]])


class MullerBrownCalculator(HessianCalculator):
    """One atom on the Müller–Brown surface (energy eV, forces eV/Å, Hessian (3, 3) eV/Å²).

    scale: multiplies V (and its derivatives); k_z: in-plane restraint, eV/Å².
    """

    def __init__(self, scale: float = 1.0, k_z: float = 100.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)
        self.k_z = float(k_z)
        self.potential_name = "muller-brown"

    def evaluate(self, atoms, hessian: bool):
        if len(atoms) != 1:
            raise ValueError(f"Müller–Brown is a one-atom surface, got {len(atoms)} atoms")
        x, y, z = (float(t) for t in atoms.positions[0])
        v, g, h2 = muller_brown(x, y)
        s = self.scale
        out = {"energy": s * v + 0.5 * self.k_z * z * z,
               "forces": -np.array([[s * g[0], s * g[1], self.k_z * z]])}
        if hessian:
            h = np.zeros((3, 3))
            h[:2, :2] = s * h2
            h[2, 2] = self.k_z
            out["hessian"] = h
        return out


def muller_brown_atoms(x: float, y: float, symbol: str = "H"):
    """An ASE ``Atoms`` of one atom at (x, y, 0) Å with a MullerBrownCalculator attached."""
    from ase import Atoms

    atoms = Atoms(symbol, positions=[[x, y, 0.0]])
    atoms.calc = MullerBrownCalculator()
    return atoms
