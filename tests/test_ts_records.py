"""`horm ts run` records: a line per stage, a valid partial record.json after a SIGKILL,
settings and version in every record, IRC convergence apart from relaxed ends, and an
odd-electron (radical) reaction that runs as a doublet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from horm.cli import app

# H· + H2 -> H2 + H· : 3 electrons, a radical (the files say nothing about multiplicity)
H3 = """3
reactant
H  -2.000  0.100  0.000
H   0.000  0.000  0.000
H   0.740  0.000  0.000
3
product
H  -0.740  0.000  0.000
H   0.000  0.000  0.000
H   2.000  0.100  0.000
"""


@pytest.fixture()
def h3(tmp_path) -> Path:
    f = tmp_path / "h3.xyz"
    f.write_text(H3)
    return f


def test_irc_converged_is_not_ends_relaxed():
    """A branch that stopped at max_steps is no converged IRC, even with both ends relaxed."""
    from ase import Atoms

    from horm.ts.irc import IRCResult

    end = Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]])
    res = IRCResult([], [], end, end.copy(), {"forward": True, "reverse": False}, {"forward": 3, "reverse": 100},
                    {"forward": True, "reverse": True}, {"forward": 2, "reverse": 4}, 1.0)
    assert not res.success and not res.converged_both
    assert res.ends_relaxed
    rec = res.record()
    assert rec["success"] is False and rec["ends_relaxed"] is True


def test_odd_electrons_default_to_doublet_and_explicit_singlet_is_refused(h3):
    from horm.label.engine import resolve_spin
    from horm.ts.workflow import prepare_reaction

    r, p, notes = prepare_reaction(h3)
    assert r.info["multiplicity"] == p.info["multiplicity"] == 2
    assert len(notes) == 1 and "doublet" in notes[0]
    r, _, notes = prepare_reaction(h3, charge=1)  # H3+: 2 electrons, singlet, no note
    assert r.info["charge"] == 1 and r.info["multiplicity"] == 1 and not notes
    r, _, notes = prepare_reaction(h3, multiplicity=4)  # quartet as asked
    assert r.info["multiplicity"] == 4 and not notes
    from horm.data.sample import Sample

    s = Sample(numbers=np.array([1]), pos=np.zeros((1, 3)))
    assert resolve_spin(s, multiplicity=1) is None and s.multiplicity == 1  # explicit: kept (check_spin refuses)


@pytest.mark.skipif(not __import__("importlib").util.find_spec("tblite"), reason="tblite not installed")
def test_radical_reaction_runs_through_xtb_with_stage_lines(h3, tmp_path):
    pytest.importorskip("sella")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["ts", "run", str(h3), "-p", "xtb", "-o", str(out), "--settings",
                                   str(_fast_settings(tmp_path))])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert any(ln.startswith("path    ok") for ln in lines), res.output
    assert any(ln.startswith("TS ") for ln in lines)
    assert "doublet" in res.output
    rec = json.loads((out / "record.json").read_text())
    assert rec["status"] == "done" and rec["path_success"]
    assert rec["multiplicity"] == 2 and any("doublet" in n for n in rec["notes"])
    assert rec["horm_version"] and rec["settings"]["tsopt"]["max_steps"] == 30
    # the radical's energies are xTB doublet energies: finite along the band
    assert np.all(np.isfinite(rec["stages"]["path"]["energies"]))
    if "irc" in rec["stages"]:
        irc = rec["stages"]["irc"]
        assert rec["irc_converged"] == (irc["converged"]["forward"] and irc["converged"]["reverse"])
        assert rec["irc_success"] == rec["irc_converged"]


def _fast_settings(tmp_path: Path) -> Path:
    f = tmp_path / "settings.yaml"
    f.write_text("tsopt: {max_steps: 30}\nirc: {max_steps: 40, opt_max_steps: 100}\n")
    return f


@pytest.mark.skipif(not __import__("importlib").util.find_spec("tblite"), reason="tblite not installed")
def test_sigkill_mid_run_leaves_a_valid_partial_record(h3, tmp_path):
    pytest.importorskip("sella")
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "horm.cli", "ts", "run", str(h3), "-p", "xtb", "-o", str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    rec_path = out / "record.json"
    try:
        deadline = time.time() + 120
        while not rec_path.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # the TS optimisation (seconds) is running now
    finally:
        proc.wait(timeout=30)
    assert rec_path.exists(), proc.stdout.read().decode()
    rec = json.loads(rec_path.read_text())
    assert rec["status"] == "running"
    assert "path" in rec["stages"] and "irc" not in rec["stages"]
    assert rec["settings"]["path"]["n_images"] > 0 and rec["horm_version"]
    assert rec["multiplicity"] == 2
    from horm.data.xyz import read_xyz

    band = read_xyz(out / "path.xyz")
    assert len(band) == rec["settings"]["path"]["n_images"]
    assert not list(out.glob("*.tmp"))


def test_benchmark_timeout_record_keeps_the_finished_stages(tmp_path):
    """A reaction killed at its timeout keeps the stages its partial record.json holds."""
    from horm.ts.benchmark import _failure, _partial
    from horm.safe_io import write_json_atomic
    from horm.ts.workflow import RunSettings

    partial = {"rxn": "r1", "status": "running", "path_success": True, "horm_version": "x",
               "stages": {"path": {"success": True, "seconds": 1.0}}, "multiplicity": 2}
    write_json_atomic(tmp_path / "record.json", partial)
    settings = RunSettings().to_dict()
    rec = _failure("r1", "timeout", 5.0, "killed after 5 s", settings, _partial(tmp_path))
    assert rec["status"] == "timeout" and rec["path_success"] and list(rec["stages"]) == ["path"]
    assert rec["multiplicity"] == 2 and rec["settings"] == settings and not rec["intended"]
    write_json_atomic(tmp_path / "record.json", {**partial, "status": "done"})
    assert _partial(tmp_path) is None  # a finished record is no partial one
