"""HormCalculator over a saved model: one line to load, forces = −∇E, Hessian = ∂²E/∂r²."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from horm.errors import HormError


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from horm.models.registry import build_model
    from horm.models.files import save_model

    torch.manual_seed(0)
    model = build_model("leftnet", "tiny")
    model.set_atom_ref({1: -13.6, 6: -1030.0, 8: -2040.0})
    return save_model(model, tmp_path_factory.mktemp("model") / "model.pt")


def _formaldehyde():
    return Atoms("CH2O", positions=[[0.0, 0.0, 0.0], [0.0, 0.94, -0.59], [0.0, -0.94, -0.59], [0.0, 0.0, 1.21]])


def test_loaded_model_gives_consistent_energy_forces_and_hessian(model_file):
    from horm.calculators.potential import load_potential

    calc = load_potential(str(model_file))
    atoms = _formaldehyde()
    atoms.calc = calc
    e0 = atoms.get_potential_energy()
    assert e0 < -3000  # the per-element references are part of the total energy
    f = atoms.get_forces()
    h = calc.get_hessian(atoms)
    assert h.shape == (12, 12)
    np.testing.assert_allclose(h, h.T, atol=1e-10)
    d = 1e-4
    for k in (0, 4, 11):  # central differences of forces (float64 model)
        a = atoms.copy()
        a.calc = calc
        a.positions.flat[k] += d
        fp = a.get_forces().ravel()
        a.positions.flat[k] -= 2 * d
        fm = a.get_forces().ravel()
        np.testing.assert_allclose(h[k], -(fp - fm) / (2 * d), atol=1e-6)
    a = atoms.copy()
    a.calc = calc
    a.positions.flat[5] += d
    ep = a.get_potential_energy()
    a.positions.flat[5] -= 2 * d
    em = a.get_potential_energy()
    assert f.flat[5] == pytest.approx(-(ep - em) / (2 * d), abs=1e-6)
    assert calc.counts["hessian"] == 1


def test_hessian_is_cached_per_geometry_and_sets_results(model_file):
    from horm.calculators.potential import load_potential

    calc = load_potential(str(model_file))
    atoms = _formaldehyde()
    h1 = calc.get_hessian(atoms)
    atoms.calc = calc
    atoms.get_forces()  # comes with the Hessian: no new evaluation
    h2 = calc.get_hessian(atoms)
    np.testing.assert_array_equal(h1, h2)
    assert calc.counts == {"energy_forces": 0, "hessian": 1}


def test_bad_potential_specs(tmp_path):
    from horm.calculators.potential import load_potential

    with pytest.raises(ValueError, match="xtb"):
        load_potential("gfn9")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(HormError, match="junk.pt"):
        load_potential(str(junk))
