"""`horm ts` refuses bad reaction files and bad options with one clear line (exit code 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from horm.cli import app

R = """3
reactant
O 0.000 0.000 0.117
H 0.000 0.757 -0.467
H 0.000 -0.757 -0.467
"""
P_SAME = R.replace("reactant", "product")
P_ORDER = """3
product
H 0.000 0.757 -0.467
O 0.000 0.000 0.117
H 0.000 -0.757 -0.467
"""
P_ELEMENTS = """3
product
O 0.000 0.000 0.117
H 0.000 0.757 -0.467
F 0.000 -0.757 -0.467
"""


def _run(tmp_path: Path, text: str, *extra: str):
    f = tmp_path / "rxn_bad.xyz"
    f.write_text(text)
    res = CliRunner().invoke(app, ["ts", "run", str(f), "--potential", "xtb", "--out", str(tmp_path / "out"), *extra])
    return f, res


@pytest.mark.parametrize("text, problem", [
    (R + P_ORDER, "atom order differs"),
    (R + P_ELEMENTS, "different elements"),
    (R, "exactly 2 frames"),
])
def test_bad_reaction_files_get_one_line_errors(tmp_path, text, problem):
    f, res = _run(tmp_path, text)
    assert res.exit_code == 1, res.output  # a DataError: exit 1 (2 is for usage errors)
    msg = " ".join(res.output.split())
    assert str(f.name) in msg and problem in msg
    assert "Traceback" not in res.output
    assert not (tmp_path / "out" / "record.json").exists()


def test_invalid_option_values_list_the_valid_ones(tmp_path):
    _, res = _run(tmp_path, R + P_SAME, "--interpolation", "spline")
    assert res.exit_code == 2
    assert "geodesic" in res.output and "idpp" in res.output and "spline" in res.output


def test_unknown_potential_is_refused(tmp_path):
    f = tmp_path / "rxn_ok.xyz"
    f.write_text(R + P_SAME.replace("0.117", "0.120"))
    res = CliRunner().invoke(app, ["ts", "run", str(f), "--potential", "no_such_model.ckpt", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "no_such_model.ckpt" in res.output and "xtb" in res.output
