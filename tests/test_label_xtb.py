"""xtb engine (GFN2-xTB, tblite): units and derivatives are consistent, physics invariants hold,
charge/multiplicity matter, SCF failures become LabelError (with a recorded retry)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from ase.build import molecule
from scipy.spatial.transform import Rotation

from horm.data.sample import Sample
from horm.errors import LabelError
from horm.label import get_engine
from horm.units import HARTREE_TO_EV


def _sample(name: str, seed: int = 0, jitter: float = 0.05, **kw) -> Sample:
    """ASE molecule with a small random distortion (off equilibrium: forces are non-zero)."""
    a = molecule(name)
    rng = np.random.default_rng(seed)
    return Sample(numbers=a.numbers.astype(np.int64),
                  pos=a.positions + rng.normal(scale=jitter, size=a.positions.shape), **kw)


@pytest.fixture(scope="module")
def ethanol() -> Sample:
    return _sample("CH3CH2OH")


@pytest.fixture(scope="module")
def tight():
    # tight SCF so that finite differences of the energy are not SCF noise
    return get_engine("xtb", accuracy=1e-3)


def test_forces_are_minus_fd_gradient_of_energy(ethanol, tight):
    out = tight.compute(ethanol, want=("energy", "forces"))
    assert out.hessian is None
    h = 1e-3  # Å
    fd = np.empty(3 * ethanol.natoms)
    for k in range(fd.size):
        e = []
        for sign in (1, -1):
            pos = ethanol.pos.copy().reshape(-1)
            pos[k] += sign * h
            e.append(tight.compute(ethanol.copy(pos=pos.reshape(-1, 3)), want=("energy",)).energy)
        fd[k] = -(e[0] - e[1]) / (2 * h)
    assert np.abs(out.forces).max() > 0.1  # distorted geometry: a real test
    np.testing.assert_allclose(out.forces.reshape(-1), fd, atol=2e-4)


def test_hessian_symmetric_and_matches_fd_of_forces_at_another_step(ethanol, tight):
    out = get_engine("xtb").compute(ethanol)  # default step 0.0025 Å
    H = out.hessian
    n3 = 3 * ethanol.natoms
    assert H.shape == (n3, n3)
    np.testing.assert_allclose(H, H.T, atol=1e-12)
    # independent central difference of the engine's forces, step 0.005 Å
    h = 0.005
    fd = np.empty((n3, n3))
    for k in range(n3):
        f = []
        for sign in (1, -1):
            pos = ethanol.pos.copy().reshape(-1)
            pos[k] += sign * h
            f.append(tight.compute(ethanol.copy(pos=pos.reshape(-1, 3)), want=("forces",)).forces.reshape(-1))
        fd[:, k] = -(f[0] - f[1]) / (2 * h)
    fd = 0.5 * (fd + fd.T)
    assert np.abs(H).max() > 10  # bond stretches: tens of eV/Å²
    assert np.abs(H - fd).max() < 0.02  # eV/Å²; the two steps differ by O(h²) truncation
    assert np.abs(H - fd).mean() < 1e-3
    # translation invariance (no grid in xTB): every row sums to ~0 over atoms
    assert np.abs(H.reshape(n3, -1, 3).sum(axis=1)).max() < 5e-3


def test_rotation_invariance(ethanol):
    eng = get_engine("xtb")
    R = Rotation.from_euler("xyz", [37.0, -71.0, 113.0], degrees=True).as_matrix()
    a = eng.compute(ethanol)
    b = eng.compute(ethanol.copy(pos=ethanol.pos @ R.T))
    assert b.energy == pytest.approx(a.energy, abs=1e-6)
    np.testing.assert_allclose(b.forces, a.forces @ R.T, atol=1e-5)
    n = ethanol.natoms
    big_r = np.kron(np.eye(n), R)  # acts on (atom, xyz) blocks
    np.testing.assert_allclose(b.hessian, big_r @ a.hessian @ big_r.T, atol=5e-3)


def test_units_and_copy_semantics():
    water = _sample("H2O", jitter=0.0)
    water.extras["tag"] = 7
    out = get_engine("xtb").compute(water, want=("energy",))
    # GFN2-xTB water is about -5.07 Eh
    assert -5.2 < out.energy / HARTREE_TO_EV < -5.0
    assert out.forces is None and out.hessian is None
    assert water.energy is None  # the input is not modified
    assert out.extras["tag"] == 7 and out is not water


def test_charge_and_multiplicity_are_honoured():
    pos = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.97]])
    eng = get_engine("xtb")
    anion = eng.compute(Sample(numbers=np.array([8, 1]), pos=pos, charge=-1, multiplicity=1), ("energy",))
    radical = eng.compute(Sample(numbers=np.array([8, 1]), pos=pos, charge=0, multiplicity=2), ("energy",))
    # OH- is bound relative to OH + e- at this level: a few eV lower in energy
    assert anion.energy < radical.energy - 1.0
    with pytest.raises(LabelError, match="multiplicity 1"):
        eng.compute(Sample(numbers=np.array([8, 1]), pos=pos, charge=0, multiplicity=1))
    # triplet and singlet O2 differ too (by only ~0.07 eV: GFN2 has no spin polarisation,
    # the multiplicity only changes the orbital occupations)
    o2 = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.21]])
    e3 = eng.compute(Sample(numbers=np.array([8, 8]), pos=o2, multiplicity=3), ("energy",)).energy
    e1 = eng.compute(Sample(numbers=np.array([8, 8]), pos=o2, multiplicity=1), ("energy",)).energy
    assert abs(e3 - e1) > 0.01


def _stretched_n2() -> Sample:
    # N≡N pulled to 2.8 Å: near-degenerate; its SCF needs 15 cycles at 300 K but 7 at 1000 K
    return Sample(numbers=np.array([7, 7]), pos=np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 2.825]]))


def test_nonconverged_scf_raises_label_error():
    s = _stretched_n2()
    with pytest.raises(LabelError, match="not converged.*retry at T_el=1000 K.*not converged"):
        get_engine("xtb", max_iter=1).compute(s)
    with pytest.raises(LabelError, match="not converged") as info:
        get_engine("xtb", max_iter=10, retry=False).compute(s)
    assert "retry" not in str(info.value) and "\n" not in str(info.value)


def test_retry_at_higher_temperature_is_recorded_and_consistent():
    s = _stretched_n2()
    out = get_engine("xtb", max_iter=10).compute(s)
    assert out.extras["xtb_retry"] == 1
    assert out.extras["electronic_temperature_K"] == 1000.0
    hot = get_engine("xtb", electronic_temperature=1000.0, retry=False).compute(s)
    cold = get_engine("xtb").compute(s)
    assert "xtb_retry" not in cold.extras
    assert out.energy == pytest.approx(hot.energy, abs=1e-6)
    np.testing.assert_allclose(out.hessian, hot.hessian, atol=1e-3)
    assert abs(out.energy - cold.energy) > 0.01  # the smearing really changed


def test_engine_is_picklable_silent_and_described(ethanol, capfd):
    eng = get_engine("xtb", electronic_temperature=500.0)
    a = eng.compute(ethanol, ("energy", "forces"))
    clone = pickle.loads(pickle.dumps(eng))
    b = clone.compute(ethanol, ("energy", "forces"))
    assert b.energy == a.energy
    out, err = capfd.readouterr()
    assert out == ""  # tblite prints nothing at verbosity 0
    assert "GFN2-xTB" in eng.level_of_theory and "h=0.0025 Å" in eng.level_of_theory
    assert eng.settings["electronic_temperature"] == 500.0
    assert get_engine("xtb", **eng.settings) == eng  # settings rebuild the engine


def test_bad_options():
    with pytest.raises(ValueError, match="xtb, dft"):
        get_engine("orca")
    with pytest.raises(ValueError, match="valid: .*electronic_temperature"):
        get_engine("xtb", temperature=300)
    with pytest.raises(ValueError, match="GFN2-xTB"):
        get_engine("xtb", method="GFN3")
    with pytest.raises(ValueError, match="energy, forces, hessian"):
        get_engine("xtb").compute(_sample("H2O"), want=("dipole",))
