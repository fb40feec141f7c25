"""Per-element reference energies: E ≈ Σ_atoms ref[Z]; the model learns E − Σ ref[Z].

HORM trains on ``ae`` = energy − Σ per-element references. We fit the references by
least squares on the training split and save them with the model (and for Fig. 1).
"""

from __future__ import annotations

import numpy as np


def composition_matrix(numbers_list, elements: list[int]) -> np.ndarray:
    col = {z: k for k, z in enumerate(elements)}
    a = np.zeros((len(numbers_list), len(elements)))
    for i, nums in enumerate(numbers_list):
        for z in np.asarray(nums, dtype=int):
            a[i, col[int(z)]] += 1
    return a


def fit_atom_references(numbers_list, energies) -> dict[int, float]:
    """Least-squares per-element energies (eV) so that E ≈ Σ ref[Z]. Minimum-norm if rank-deficient."""
    energies = np.asarray(energies, dtype=np.float64)
    elements = sorted({int(z) for nums in numbers_list for z in np.asarray(nums)})
    a = composition_matrix(numbers_list, elements)
    coef, *_ = np.linalg.lstsq(a, energies, rcond=None)
    return {z: float(c) for z, c in zip(elements, coef)}


def referenced_energy(numbers, energy: float, refs: dict[int, float]) -> float:
    """energy − Σ ref[Z] in eV. Unknown elements raise KeyError naming the element."""
    total = 0.0
    for z in np.asarray(numbers, dtype=int):
        if int(z) not in refs:
            raise KeyError(f"no reference energy for element Z={int(z)}")
        total += refs[int(z)]
    return float(energy) - total
