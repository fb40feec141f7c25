"""Eckart projection and frequencies against analytic and independent results."""

from __future__ import annotations

import numpy as np
import pytest
from ase.data import atomic_masses
from scipy.spatial.transform import Rotation

from horm.hessian.analysis import cartesian_eigenvalues, eckart_project, frequencies, n_imaginary, rigid_body_basis
from horm.units import SQRT_EV_PER_ANG2_AMU_TO_CM1


def spring_hessian(pos, pairs, k, r0=None):
    """Analytic Hessian (eV/Å²) of E = Σ k/2 (r_ij − r0_ij)²; at r = r0 it has exact rigid-body zeros."""
    n = len(pos)
    h = np.zeros((3 * n, 3 * n))
    for (i, j), kk in zip(pairs, np.broadcast_to(k, len(pairs))):
        d = pos[j] - pos[i]
        r = np.linalg.norm(d)
        u = d / r
        rr0 = r if r0 is None else r0
        blk = kk * (np.outer(u, u) + (1 - rr0 / r) * (np.eye(3) - np.outer(u, u)))
        for a, b, s in ((i, i, 1), (j, j, 1), (i, j, -1), (j, i, -1)):
            h[3 * a:3 * a + 3, 3 * b:3 * b + 3] += s * blk
    return h


def test_diatomic_frequency_is_sqrt_k_over_mu():
    pos = np.array([[0.0, 0.0, 0.0], [0.3, 0.5, 0.9]])
    k = 36.0  # eV/Å²
    f = frequencies(spring_hessian(pos, [(0, 1)], k), pos, [1, 8])
    mu = atomic_masses[1] * atomic_masses[8] / (atomic_masses[1] + atomic_masses[8])
    assert f.shape == (1,)  # linear: 3N − 5 = 1
    assert f[0] == pytest.approx(np.sqrt(k / mu) * SQRT_EV_PER_ANG2_AMU_TO_CM1, rel=1e-10)
    assert SQRT_EV_PER_ANG2_AMU_TO_CM1 == pytest.approx(521.47, abs=0.05)


def test_nonlinear_projection_removes_six_modes_and_is_rotation_invariant():
    rng = np.random.default_rng(0)
    pos = rng.normal(scale=1.2, size=(6, 3))
    pairs = [(i, j) for i in range(6) for j in range(i + 1, 6)]
    h = spring_hessian(pos, pairs, rng.uniform(5, 30, len(pairs)))
    nums = [6, 1, 1, 8, 7, 1]
    f = frequencies(h, pos, nums)
    assert f.shape == (12,) and np.all(f > 10)
    # the projected mass-weighted Hessian has exactly six zero eigenvalues
    ev = np.linalg.eigvalsh(eckart_project(h, pos, atomic_masses[nums]))
    assert np.sum(np.abs(ev) < 1e-8) == 6
    rot = Rotation.random(random_state=3).as_matrix()
    big = np.kron(np.eye(6), rot)
    f_rot = frequencies(big @ h @ big.T, pos @ rot.T + 1.7, nums)
    assert np.allclose(f, f_rot, rtol=1e-9)


def test_rigid_body_basis_linear_molecule():
    pos = np.array([[0, 0, -1.16], [0, 0, 0], [0, 0, 1.16]])
    assert rigid_body_basis(pos, atomic_masses[[8, 6, 8]]).shape == (9, 5)
    h = spring_hessian(pos, [(0, 1), (1, 2)], 100.0)
    assert len(frequencies(h, pos, [8, 6, 8])) == 4


def test_saddle_has_one_imaginary_mode():
    """A stretched spring (r > r0 has tension; r < r0 compression) plus a negative spring gives a saddle."""
    pos = np.array([[0, 0, 0], [1.0, 0.2, 0], [2.1, 0, 0.1]])
    h = spring_hessian(pos, [(0, 1), (1, 2), (0, 2)], np.array([40.0, 40.0, -15.0]))
    f = frequencies(h, pos, [6, 1, 6])
    assert n_imaginary(f) == 1 and f[0] < -10
    assert cartesian_eigenvalues(h)[0] < 0


def test_water_xtb_matches_ase_vibrations():
    """Independent check: our frequencies vs ASE's finite-difference vibrations on GFN2-xTB water."""
    pytest.importorskip("tblite")
    from ase import Atoms
    from ase.optimize import BFGS
    from ase.vibrations import Vibrations
    from tblite.ase import TBLite

    atoms = Atoms("OH2", positions=[[0, 0, 0.12], [0, 0.76, -0.47], [0, -0.76, -0.47]])
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    BFGS(atoms, logfile=None).run(fmax=1e-4)
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        vib = Vibrations(atoms, name=os.path.join(d, "vib"), delta=0.005, nfree=2)
        vib.run()
        data = vib.get_vibrations()
        ase_freq = np.sort(np.real(data.get_frequencies()))[-3:]
        h = data.get_hessian_2d()
    ours = frequencies(h, atoms.positions, atoms.numbers)
    assert ours.shape == (3,)
    assert np.allclose(ours, ase_freq, atol=2.0)
    # GFN2-xTB water: bend ~1500-1600, stretches ~3500-3700 cm⁻¹ (experiment 1595, 3657, 3756)
    assert 1400 < ours[0] < 1700 and 3400 < ours[1] < 3900 and 3400 < ours[2] < 3900
