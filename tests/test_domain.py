"""The calculator refuses structures outside its model's domain, in one line, unless told not to."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from horm.errors import DomainError


@pytest.fixture(scope="module")
def hcno_model(tmp_path_factory):
    """A tiny model saved as if trained on H, C, N, O (GFN2-xTB labels)."""
    from horm.models.registry import build_model
    from horm.models.files import save_model

    torch.manual_seed(0)
    model = build_model("leftnet", "tiny").double()
    model.set_atom_ref({1: -13.6, 6: -1030.0, 7: -1480.0, 8: -2040.0})
    return save_model(model, tmp_path_factory.mktemp("hcno") / "model.pt",
                      meta={"elements": [1, 6, 7, 8], "level_of_theory": "GFN2-xTB (tblite)"})


@pytest.fixture()
def calc(hcno_model):
    from horm.calculators.potential import HormCalculator

    return HormCalculator.from_file(hcno_model)


def test_model_file_records_the_training_elements(hcno_model):
    from horm.models.files import load_model

    _, info = load_model(hcno_model)
    assert info["elements"] == [1, 6, 7, 8]
    assert info["level_of_theory"] == "GFN2-xTB (tblite)"


def test_methyl_chloride_is_refused_by_an_hcno_model(calc):
    atoms = molecule("CH3Cl")
    atoms.calc = calc
    with pytest.raises(DomainError, match=r"Cl outside the training elements H, C, N, O") as err:
        atoms.get_potential_energy()
    assert "\n" not in str(err.value)
    with pytest.raises(DomainError, match="Cl"):
        calc.get_hessian(atoms)
    assert calc.counts == {"energy_forces": 0, "hessian": 0}  # refused before any computation


def test_methanethiol_and_a_dummy_atom_are_refused(calc):
    with pytest.raises(DomainError, match="S outside"):
        calc.get_hessian(molecule("CH3SH"))
    x = Atoms(numbers=[6, 0], positions=[[0, 0, 0], [0, 0, 1.2]])
    with pytest.raises(DomainError, match="Z=0 outside"):
        calc.get_hessian(x)


def test_periodic_cell_is_refused(calc):
    atoms = molecule("CH4")
    atoms.set_cell([8.0, 8.0, 8.0])
    atoms.pbc = True
    atoms.calc = calc
    with pytest.raises(DomainError, match="periodic cell"):
        atoms.get_forces()
    atoms.pbc = False  # the same molecule without periodic images is fine
    assert np.isfinite(atoms.get_potential_energy())


@pytest.mark.parametrize("info,match", [({"charge": 1}, "charge 1"), ({"spin": 3}, "multiplicity 3"),
                                        ({"multiplicity": 2}, "multiplicity 2")])
def test_charge_and_spin_other_than_neutral_singlet_are_refused(calc, info, match):
    atoms = molecule("CH4")
    atoms.info.update(info)
    with pytest.raises(DomainError, match=match):
        calc.get_hessian(atoms)


def test_opt_out_computes_anyway(hcno_model):
    from horm.calculators.potential import HormCalculator

    calc = HormCalculator.from_file(hcno_model, check_domain=False)
    atoms = molecule("CH3Cl")
    atoms.info["charge"] = 1
    h = calc.get_hessian(atoms)
    assert h.shape == (15, 15) and np.isfinite(h).all()


def test_elements_default_to_those_with_a_fitted_reference():
    from horm.models.registry import build_model
    from horm.calculators.potential import HormCalculator

    model = build_model("leftnet", "tiny")
    model.set_atom_ref({1: -13.6, 6: -1030.0})
    calc = HormCalculator(model)
    assert calc.elements == [1, 6]
    with pytest.raises(DomainError, match="O outside"):
        calc.get_hessian(molecule("H2O"))


def test_engine_checks_cell_but_honours_charge():
    from horm.calculators.potential import load_potential

    xtb = load_potential("xtb")
    atoms = molecule("H2O")
    atoms.pbc = True
    atoms.set_cell([6.0, 6.0, 6.0])
    with pytest.raises(DomainError, match="periodic"):
        xtb.get_potential_energy(atoms)
    cation = molecule("H2O")
    cation.info.update(charge=1, multiplicity=2)
    neutral = molecule("H2O")
    e_cation, e_neutral = xtb.get_potential_energy(cation), xtb.get_potential_energy(neutral)
    assert e_cation - e_neutral > 5.0  # an ionisation energy (eV): the charge was honoured


def test_level_of_theory_mismatch_warns_only_across_methods():
    from horm.models.domain import theory_mismatch

    xtb = "GFN2-xTB (tblite), T_el=300 K, FD Hessian of analytic gradients, central, h=0.0025 Å, symmetrised"
    assert theory_mismatch("GFN2-xTB (tblite)", xtb) is None
    assert theory_mismatch("unknown", xtb) is None
    msg = theory_mismatch(xtb, "ωB97X/6-31G(d) (published HORM)")
    assert msg is not None and "ωB97X/6-31G(d)" in msg and "GFN2-xTB" in msg


def test_evaluate_warns_when_data_and_model_levels_differ(hcno_model, horm_sample_path, tmp_path):
    from typer.testing import CliRunner

    from horm.cli import app

    res = CliRunner().invoke(app, ["evaluate", str(hcno_model), "--data", str(horm_sample_path),
                                   "--max-samples", "2", "--no-hessian", "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    assert "warning" in res.output and "not comparable across levels of theory" in res.output
