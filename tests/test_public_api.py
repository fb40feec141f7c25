"""The front door: `import horm` is light, and its entry points load, compute and refuse misuse clearly."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from ase.build import molecule

from horm.errors import HormError


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from horm.models.registry import build_model
    from horm.models.files import save_model

    torch.manual_seed(0)
    model = build_model("leftnet", "tiny").double()
    model.set_atom_ref({1: -13.6, 6: -1030.0, 8: -2040.0})
    return save_model(model, tmp_path_factory.mktemp("api") / "model.pt")


def test_import_horm_loads_no_torch_and_lists_the_entry_points():
    code = ("import sys, horm; heavy = [m for m in ('torch', 'ase', 'numpy', 'lightning') if m in sys.modules]; "
            "print(heavy); print(sorted(set(horm.__all__) - set(dir(horm))))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split("\n")
    assert out[0] == "[]", f"import horm imported {out[0]}"
    assert out[1] == "[]"


def test_public_names_resolve_to_the_library_objects():
    import horm
    from horm.data.io import open_dataset
    from horm.models.files import load_model
    from horm.calculators.potential import HormCalculator

    assert horm.HormCalculator is HormCalculator
    assert horm.load_model is load_model
    assert horm.open_dataset is open_dataset
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        horm.nope  # noqa: B018


def test_a_path_given_to_the_constructor_is_a_clear_type_error(model_file):
    import horm

    with pytest.raises(TypeError, match=r"HormCalculator.from_file"):
        horm.HormCalculator(str(model_file))
    with pytest.raises(TypeError, match=r"from_file"):
        horm.HormCalculator(model_file)


def test_from_file_and_get_property_hessian(model_file):
    import horm

    calc = horm.HormCalculator.from_file(model_file, dtype=torch.float64, threads=1)
    atoms = molecule("H2CO")
    atoms.calc = calc
    h_prop = atoms.calc.get_property("hessian", atoms)
    h = calc.get_hessian(atoms)
    assert h_prop.shape == (12, 12)
    np.testing.assert_array_equal(h_prop, h)
    # the same numbers as the calculator the TS workflow builds (whose Hessian test_ts_calculator checks)
    np.testing.assert_array_equal(h, horm.load_potential(str(model_file)).get_hessian(atoms))


def test_dtype_as_string_or_torch_dtype_gives_the_same_calculator(model_file):
    import horm

    a = horm.HormCalculator.from_file(model_file, dtype="float32")
    b = horm.load_potential(str(model_file), dtype=torch.float32)
    assert a.dtype == b.dtype == torch.float32
    atoms = molecule("H2CO")
    assert a.get_potential_energy(atoms) == b.get_potential_energy(atoms)
    with pytest.raises(ValueError, match="float32, float64"):
        horm.HormCalculator.from_file(model_file, dtype="float16")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_cpu_build_is_one_clear_line(model_file):
    import horm

    with pytest.raises(HormError, match=r"device 'cuda': torch .* use device cpu") as err:
        horm.HormCalculator.from_file(model_file, device="cuda")
    assert "\n" not in str(err.value)
    from typer.testing import CliRunner

    from horm.cli import app

    res = CliRunner().invoke(app, ["evaluate", str(model_file), "--data", "x.xyz", "--device", "cuda"])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_open_dataset_reads_the_bundled_store():
    import horm
    from horm.datasets import bundled_split_path

    ds = horm.open_dataset(bundled_split_path("val"))
    s = ds[0]
    assert s.hessian is not None and s.hessian.shape == (3 * len(s.numbers),) * 2


def test_constructor_puts_the_model_in_the_requested_dtype():
    import horm
    from horm.models.registry import build_model

    model = build_model("leftnet", "tiny")  # float32 weights
    model.set_atom_ref({1: -13.6, 6: -1030.0, 8: -2040.0})
    calc = horm.HormCalculator(model, dtype="float64")
    assert next(model.parameters()).dtype == torch.float64
    assert np.isfinite(calc.get_hessian(molecule("H2CO"))).all()
