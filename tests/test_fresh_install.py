"""`pip install .` gives a working front door: `import horm` → HormCalculator.from_file → get_hessian.

A fully fresh venv would download and unpack torch (~750 MB) and ~80 other packages: minutes,
and network access the test suite must not need. So the venv is fresh for *horm* only: it
sees the test interpreter's installed dependencies through a ``.pth`` line (what
``--system-site-packages`` does for a system Python), and horm itself comes from a
non-editable ``pip install --no-deps --no-build-isolation`` of a copy of this source tree.
The subprocess has no PYTHONPATH, so it must import the installed copy, not ``src/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import sys, json
    import horm
    lazy = "torch" not in sys.modules and "ase" not in sys.modules
    from ase import Atoms
    atoms = Atoms("CH2O", positions=[[0, 0, 0], [0, 0.94, -0.59], [0, -0.94, -0.59], [0, 0, 1.21]])
    calc = horm.HormCalculator.from_file(sys.argv[1])
    atoms.calc = calc
    h = calc.get_hessian(atoms)
    from importlib.resources import files
    print(json.dumps({"file": horm.__file__, "lazy": lazy, "typed": files("horm").joinpath("py.typed").is_file(),
                      "energy": atoms.get_potential_energy(), "hessian": h.tolist()}))
""")


def test_pip_install_then_calculator_from_file_gives_the_hessian(tmp_path):
    import json

    import torch
    from ase import Atoms

    from horm.models.registry import build_model
    from horm.models.files import save_model
    from horm.calculators.potential import HormCalculator

    torch.manual_seed(0)
    model = build_model("leftnet", "tiny").double()
    model.set_atom_ref({1: -13.6, 6: -1030.0, 8: -2040.0})
    model_path = save_model(model, tmp_path / "run" / "model.pt")

    src = tmp_path / "src_copy"  # build from a copy: pip writes build/ and *.egg-info next to the sources
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # dependencies, not horm
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                    "--no-build-isolation", "--no-index", str(src)], check=True, env=env, cwd=tmp_path)
    res = subprocess.run([str(py), "-c", SCRIPT, str(model_path)], check=True, capture_output=True, text=True,
                         env=env, cwd=tmp_path)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).is_relative_to(site), out["file"]  # the installed copy, not src/
    assert out["lazy"], "import horm pulled in torch or ASE"
    assert out["typed"], "py.typed is not installed"
    # the installed package computes what the source tree computes
    atoms = Atoms("CH2O", positions=[[0, 0, 0], [0, 0.94, -0.59], [0, -0.94, -0.59], [0, 0, 1.21]])
    calc = HormCalculator.from_file(model_path)
    h = np.asarray(out["hessian"])
    assert h.shape == (12, 12)
    np.testing.assert_allclose(h, calc.get_hessian(atoms), atol=1e-10)
    assert out["energy"] == pytest.approx(calc.get_potential_energy(atoms), abs=1e-9)
