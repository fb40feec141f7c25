"""Hessian analysis: mass weighting, Eckart projection, harmonic frequencies.

Conventions: Cartesian Hessian H (3N, 3N) in eV/Å², index 3·atom + xyz; masses in amu
(ASE's table). The mass-weighted Hessian is M^{-1/2} H M^{-1/2} in eV/(Å² amu).
The Eckart projection removes the 3 translations and the 3 (2 for a linear molecule)
infinitesimal rotations about the centre of mass; frequencies are computed in the
remaining 3N−6 (3N−5) dimensional internal space, so no near-zero "rigid-body"
frequencies pollute the counts. Imaginary frequencies are reported as negative numbers
(cm⁻¹). Reference: Wilson, Decius & Cross, *Molecular Vibrations* (1955), ch. 2; the
projector is the one Gaussian's "Vibrational analysis in Gaussian" white paper describes.
"""

from __future__ import annotations

import numpy as np
from ase.data import atomic_masses

from horm.units import SQRT_EV_PER_ANG2_AMU_TO_CM1

IMAGINARY_THRESHOLD = -10.0  # cm⁻¹; a mode counts as imaginary below this


def masses_of(numbers) -> np.ndarray:
    return np.asarray(atomic_masses[np.asarray(numbers, dtype=int)], dtype=np.float64)


def mass_weight(hessian: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """M^{-1/2} H M^{-1/2}: (3N,3N) eV/Å² -> eV/(Å² amu)."""
    inv = 1.0 / np.sqrt(np.repeat(np.asarray(masses, dtype=np.float64), 3))
    return np.asarray(hessian, dtype=np.float64) * inv[:, None] * inv[None, :]


def rigid_body_basis(pos: np.ndarray, masses: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Orthonormal basis (3N, k) of mass-weighted translations and rotations, k = 5 or 6.

    For a single atom k = 3; for a linear molecule the degenerate rotation drops out.
    """
    pos = np.asarray(pos, dtype=np.float64)
    m = np.asarray(masses, dtype=np.float64)
    n = len(m)
    sqm = np.sqrt(m)
    com = (m[:, None] * pos).sum(0) / m.sum()
    r = pos - com
    vecs = []
    for ax in range(3):
        t = np.zeros((n, 3))
        t[:, ax] = sqm
        vecs.append(t.reshape(-1))
    for ax in range(3):
        e = np.zeros(3)
        e[ax] = 1.0
        vecs.append((np.cross(e, r) * sqm[:, None]).reshape(-1))
    d = np.stack(vecs, axis=1)
    u, s, _ = np.linalg.svd(d, full_matrices=False)
    keep = s > tol * max(s.max(), 1.0)
    return u[:, keep]


def internal_basis(pos: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Orthonormal basis (3N, 3N−k) of the space orthogonal to rigid-body motion."""
    rb = rigid_body_basis(pos, masses)
    q, _ = np.linalg.qr(np.concatenate([rb, np.eye(rb.shape[0])], axis=1))
    return q[:, rb.shape[1]:]


def eckart_project(hessian: np.ndarray, pos: np.ndarray, masses: np.ndarray,
                   mass_weighted: bool = True) -> np.ndarray:
    """P H_mw P with P = I − Σ v vᵀ over rigid-body vectors (3N, 3N). Symmetrises H first."""
    h = 0.5 * (np.asarray(hessian, dtype=np.float64) + np.asarray(hessian, dtype=np.float64).T)
    hm = mass_weight(h, masses) if mass_weighted else h
    rb = rigid_body_basis(pos, masses)
    p = np.eye(hm.shape[0]) - rb @ rb.T
    return p @ hm @ p


def vibrational_analysis(hessian: np.ndarray, pos: np.ndarray, numbers) -> tuple[np.ndarray, np.ndarray]:
    """Eckart-projected harmonic frequencies (cm⁻¹, ascending, imaginary < 0) and modes.

    Returns ``(freqs, modes)`` with freqs of length 3N−6 (3N−5 if linear) and modes
    (3N, 3N−k) as mass-weighted Cartesian eigenvectors.
    """
    masses = masses_of(numbers)
    h = np.asarray(hessian, dtype=np.float64)
    h = 0.5 * (h + h.T)
    q = internal_basis(pos, masses)
    hin = q.T @ mass_weight(h, masses) @ q
    lam, v = np.linalg.eigh(hin)
    freqs = np.sign(lam) * np.sqrt(np.abs(lam)) * SQRT_EV_PER_ANG2_AMU_TO_CM1
    return freqs, q @ v


def frequencies(hessian: np.ndarray, pos: np.ndarray, numbers) -> np.ndarray:
    """Eckart-projected harmonic frequencies in cm⁻¹ (imaginary ones negative)."""
    return vibrational_analysis(hessian, pos, numbers)[0]


def n_imaginary(freqs: np.ndarray, threshold: float = IMAGINARY_THRESHOLD) -> int:
    """Number of imaginary modes: frequencies below ``threshold`` cm⁻¹ (default −10)."""
    return int(np.sum(np.asarray(freqs) < threshold))


def cartesian_eigenvalues(hessian: np.ndarray) -> np.ndarray:
    """Eigenvalues (ascending, eV/Å²) of the symmetrised Cartesian Hessian (no projection)."""
    h = np.asarray(hessian, dtype=np.float64)
    return np.linalg.eigvalsh(0.5 * (h + h.T))
