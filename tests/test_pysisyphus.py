"""pysisyphus drives horm potentials: atomic units at the boundary, and a real RS-P-RFO TS search.

Skips when the optional extra is absent (``pip install horm[pysis]``). pysisyphus opens its log
files in the working directory of its first import, so every test runs in its own tmp folder.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from horm.units import ANGSTROM_TO_BOHR, HARTREE_PER_BOHR2_TO_EV_PER_ANGSTROM2, HARTREE_TO_EV

pytestmark = pytest.mark.skipif(importlib.util.find_spec("pysisyphus") is None,
                                reason="pysisyphus not installed (optional extra: pip install horm[pysis])")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def model_calc(tmp_path_factory):
    from horm.models.registry import build_model
    from horm.models.files import save_model
    from horm.calculators.potential import HormCalculator

    torch.manual_seed(0)
    model = build_model("leftnet", "tiny").double()
    model.set_atom_ref({1: -13.6, 6: -1030.0, 8: -2040.0})
    return HormCalculator.from_file(save_model(model, tmp_path_factory.mktemp("pysis") / "model.pt"))


def test_adapter_speaks_hartree_and_bohr(model_calc, tmp_path):
    """Forces are −dE/dx and the Hessian is dg/dx, both in the units of a finite difference in Bohr."""
    from ase.build import molecule

    from horm.interop.pysisyphus import HormPysisCalculator

    pc = HormPysisCalculator(model_calc, out_dir=tmp_path)
    atoms = molecule("H2CO")
    symbols = atoms.get_chemical_symbols()
    x = atoms.positions.ravel() * ANGSTROM_TO_BOHR
    res = pc.get_hessian(symbols, x)
    assert res["energy"] == pytest.approx(model_calc.get_potential_energy(atoms) / HARTREE_TO_EV, abs=1e-10)
    d = 1e-4  # Bohr
    for k in (0, 5, 10):
        xp, xm = x.copy(), x.copy()
        xp[k] += d
        xm[k] -= d
        ep, em = pc.get_energy(symbols, xp)["energy"], pc.get_energy(symbols, xm)["energy"]
        assert res["forces"][k] == pytest.approx(-(ep - em) / (2 * d), abs=1e-7)
        gp, gm = -pc.get_forces(symbols, xp)["forces"], -pc.get_forces(symbols, xm)["forces"]
        np.testing.assert_allclose(res["hessian"][:, k], (gp - gm) / (2 * d), atol=1e-6)


def test_rsprfo_finds_the_hcn_hnc_transition_state_with_xtb(tmp_path):
    """HCN ⇌ HNC with GFN2-xTB: RS-P-RFO from a bridged guess reaches a first-order saddle."""
    from pysisyphus.Geometry import Geometry
    from pysisyphus.tsoptimizers.RSPRFOptimizer import RSPRFOptimizer

    from horm.hessian.analysis import vibrational_analysis
    from horm.interop.pysisyphus import HormPysisCalculator

    guess = np.array([[0.0, 0.0, 0.0], [1.17, 0.0, 0.0], [0.3, 1.1, 0.0]])  # C, N, H (Å), H leaning to C
    geom = Geometry(["C", "N", "H"], (guess * ANGSTROM_TO_BOHR).ravel(), coord_type="redund")
    calc = HormPysisCalculator.from_spec("xtb", out_dir=tmp_path)
    geom.set_calculator(calc)
    opt = RSPRFOptimizer(geom, hessian_init="calc", hessian_recalc=3, max_cycles=50, thresh="gau",
                         out_dir=str(tmp_path), dump=False)
    opt.run()
    assert opt.is_converged
    pos = geom.cart_coords.reshape(-1, 3) / ANGSTROM_TO_BOHR
    h = calc.get_hessian(geom.atoms, geom.cart_coords)["hessian"] * HARTREE_PER_BOHR2_TO_EV_PER_ANGSTROM2
    freqs, _ = vibrational_analysis(h, pos, [6, 7, 1])
    assert int(np.sum(freqs < -10.0)) == 1, f"frequencies {freqs} cm⁻¹"
    # a bridged H: between HCN (C–H 1.07 Å) and HNC (N–H 1.00 Å), both bonds stretched
    r_ch, r_nh = np.linalg.norm(pos[2] - pos[0]), np.linalg.norm(pos[2] - pos[1])
    assert 1.1 < r_ch < 1.6 and 1.1 < r_nh < 1.6, (r_ch, r_nh)
    # above both minima (GFN2-xTB puts it ~3.2 eV above HCN and ~2.3 eV above HNC)
    ends = {"HCN": [[0.0, 0.0, 0.0], [1.16, 0.0, 0.0], [-1.07, 0.0, 0.0]],
            "HNC": [[0.0, 0.0, 0.0], [1.17, 0.0, 0.0], [2.17, 0.0, 0.0]]}
    for name, xyz in ends.items():
        e_end = calc.get_energy(["C", "N", "H"], (np.array(xyz) * ANGSTROM_TO_BOHR).ravel())["energy"]
        barrier = (geom.energy - e_end) * HARTREE_TO_EV
        assert 1.0 < barrier < 4.0, (name, barrier)
