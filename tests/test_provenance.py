"""Provenance is enforced: no silent mixing of levels of theory; changed inputs are relabelled.

Both failed on main (c1d7efa): `convert --resume` appended ωB97X samples to a GFN2-xTB
store whose metadata still said GFN2-xTB, and `label` skipped an edited file (and a
different molecule in b/mol.xyz after a/mol.xyz) as "already stored".
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from horm.cli import app
from horm.data.store import HessianStore
from horm.data.xyz import write_xyz

from _molecules import ase_molecules as _molecules

runner = CliRunner()


def test_convert_resume_refuses_another_level_unless_allowed(tmp_path, horm_sample_path):
    dst = tmp_path / "xtb.hstore"
    with HessianStore.create(dst, "GFN2-xTB (tblite)", engine="xtb", engine_settings={"method": "GFN2-xTB"}):
        pass
    r = runner.invoke(app, ["data", "convert", str(horm_sample_path), str(dst), "--resume"])
    assert r.exit_code == 1 and "refusing to mix labels" in r.output and "GFN2-xTB" in r.output
    with HessianStore.open(dst) as st:
        assert len(st) == 0 and st.meta["level_of_theory"] == "GFN2-xTB (tblite)"
    r = runner.invoke(app, ["data", "convert", str(horm_sample_path), str(dst), "--resume", "--allow-mixed"])
    assert r.exit_code == 0, r.output
    with HessianStore.open(dst) as st:
        assert len(st) == 100 and st.meta["level_of_theory"] == "mixed"
        assert [m["level_of_theory"] for m in st.meta["mixed_sources"]] == [
            "GFN2-xTB (tblite)", "ωB97X/6-31G(d) (published HORM)"]


def test_label_refuses_other_engine_settings(tmp_path):
    from horm.errors import DataError
    from horm.label import get_engine
    from horm.label.runner import label

    src = write_xyz(tmp_path / "w.xyz", _molecules(["H2O"]))
    out = tmp_path / "s.hstore"
    label(src, get_engine("xtb"), out, show_progress=False, print_summary=False)
    with pytest.raises(DataError, match="engine settings hessian_step 0.0025 vs 0.005"):
        label(src, get_engine("xtb", hessian_step=0.005), out, show_progress=False, print_summary=False)


def test_label_resume_key_follows_the_geometry(tmp_path):
    from horm.label import get_engine
    from horm.label.runner import label

    h2o, nh3 = _molecules(["H2O", "NH3"])
    eng = get_engine("xtb")
    out = tmp_path / "s.hstore"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_xyz(tmp_path / "a" / "mol.xyz", [h2o])
    s = label(tmp_path / "a" / "mol.xyz", eng, out, show_progress=False, print_summary=False)
    assert s.labelled == 1
    write_xyz(tmp_path / "b" / "mol.xyz", [nh3])  # same file name, another molecule
    s = label(tmp_path / "b" / "mol.xyz", eng, out, show_progress=False, print_summary=False)
    assert (s.labelled, s.skipped) == (1, 0)
    moved = h2o.copy(pos=np.asarray(h2o.pos) + [[0, 0, 0.02], [0, 0, 0], [0, 0, 0]])
    write_xyz(tmp_path / "a" / "mol.xyz", [moved])  # the same file, edited
    s = label(tmp_path / "a" / "mol.xyz", eng, out, show_progress=False, print_summary=False)
    assert (s.labelled, s.skipped) == (1, 0)
    s = label(tmp_path / "a" / "mol.xyz", eng, out, show_progress=False, print_summary=False)
    assert (s.labelled, s.skipped) == (0, 1)  # unchanged input: skipped
    with HessianStore.open(out) as st:
        assert len(st) == 3 and sorted(x.formula for x in st) == ["H2O", "H2O", "H3N"]
