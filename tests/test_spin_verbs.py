"""--charge/--multiplicity on `label` and `sample`: an odd-electron input runs as a doublet
by default, the options override the file, and the xTB energies show the engine got them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from horm.cli import app

pytest.importorskip("tblite")

OH = "2\nhydroxyl\nO 0.0 0.0 0.0\nH 0.0 0.0 0.97\n"
H3 = (Path(__file__).parent / "test_ts_records.py").read_text().split('H3 = """')[1].split('"""')[0]


def _label(tmp_path: Path, name: str, *extra: str):
    from horm.data.io import open_dataset

    f = tmp_path / "oh.xyz"
    f.write_text(OH)
    out = tmp_path / f"{name}.hstore"
    res = CliRunner().invoke(app, ["label", str(f), "-e", "xtb", "-o", str(out), "--no-progress", *extra])
    assert res.exit_code == 0, res.output
    ds = open_dataset(out)
    s = ds[0]
    s.extras["notes"] = ds.meta["last_run"]["notes"]
    return s


def test_label_radical_defaults_to_doublet_and_charge_overrides(tmp_path):
    radical = _label(tmp_path, "radical")  # OH·: 9 electrons, the file names no multiplicity
    assert radical.multiplicity == 2 and radical.charge == 0 and np.isfinite(radical.energy)
    assert any("doublet" in k for k in radical.extras["notes"])  # the store's run record says so
    anion = _label(tmp_path, "anion", "--charge", "-1")  # OH⁻: 10 electrons, a singlet
    assert anion.charge == -1 and anion.multiplicity == 1 and not anion.extras["notes"]
    quartet = _label(tmp_path, "quartet", "--multiplicity", "4")
    assert quartet.multiplicity == 4
    # the engine computed what the options said: three different electronic states
    assert len({round(radical.energy, 4), round(anion.energy, 4), round(quartet.energy, 4)}) == 3
    assert quartet.energy > radical.energy  # high-spin OH lies above the doublet ground state


def test_sample_radical_reaction(tmp_path):
    pytest.importorskip("sella")
    from ase.io import read

    f = tmp_path / "h3.xyz"
    f.write_text(H3)
    out = tmp_path / "geoms.extxyz"
    res = CliRunner().invoke(app, ["sample", str(f), "-m", "neb", "-e", "xtb", "-o", str(out), "--steps", "3"])
    assert res.exit_code == 0, res.output
    frames = read(str(out), index=":")
    assert frames and all(a.info["multiplicity"] == 2 for a in frames)
