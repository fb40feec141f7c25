"""The model proposes, the reference confirms (``--refine``): the reference-level verdict, every
reference call counted once, finite-difference Hessians of plain ASE calculators counted as
their force calls, bad specs in one line, and a valid record after a kill."""

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

pytest.importorskip("sella")
HAVE_XTB = __import__("importlib").util.find_spec("tblite") is not None
needs_xtb = pytest.mark.skipif(not HAVE_XTB, reason="tblite (xTB) not installed")
MODEL = "t1x-xtb-leftnet-efh"


def _reaction() -> Path:
    from horm.datasets import bundled_path

    return bundled_path("t1x_xtb_large") / "ts_reactions" / "rxn296.xyz"  # 8 atoms, xTB alone: intended


@pytest.fixture(scope="module")
def refined(tmp_path_factory):
    """``horm ts run --refine xtb`` with the shipped E-F-H model proposing (auditing the IRC)."""
    if not HAVE_XTB:
        pytest.skip("tblite (xTB) not installed")
    tmp = tmp_path_factory.mktemp("refined")
    (tmp / "s.yaml").write_text("refine: {audit_irc: true}\n")
    out = tmp / "out"
    res = CliRunner().invoke(app, ["ts", "run", str(_reaction()), "-p", MODEL, "--refine", "xtb", "-o", str(out),
                                   "--settings", str(tmp / "s.yaml")])
    assert res.exit_code == 0, res.output
    return json.loads((out / "record.json").read_text()), out, res.output


def _stage_sum(rec: dict, key: str, level_stages) -> dict:
    tot: dict = {}
    for name, st in rec["stages"].items():
        if name.startswith(level_stages):
            for k, v in st[key].items():
                tot[k] = tot.get(k, 0) + v
    return tot


@needs_xtb
def test_refined_record_counts_every_reference_call_once(refined):
    rec, _, output = refined
    assert rec["status"] == "done" and rec["reference"] == "xtb" and rec["potential"] == MODEL
    ref = rec["reference_calls"]
    assert ref["energy_forces"] > 0 and ref["hessian"] >= 1 and ref["seconds"] > 0
    # the total is the sum of the reference stages' counts (the audit IRC is counted apart)
    per_stage = _stage_sum(rec, "reference_calls", ("refine-", "irc-"))
    assert per_stage["energy_forces"] == ref["energy_forces"] and per_stage["hessian"] == ref["hessian"]
    assert rec["audit"]["reference_calls"]["energy_forces"] > 0
    # the proposer's calls: path and TS, plus its Hessians inside the refinement
    proposer = _stage_sum(rec, "calls", ("path", "tsopt", "refine-", "irc-"))
    assert proposer["energy_forces"] == rec["model_calls"]["energy_forces"]
    assert proposer["hessian"] == rec["model_calls"]["hessian"] and rec["stages"]["tsopt"]["level"] == "proposer"
    assert rec["proposal"]["ts_success"] in (True, False) and rec["refine_rmsd"] is not None
    assert "reference calls" in output and any(ln.startswith("refine  ") for ln in output.splitlines())


@needs_xtb
def test_refined_verdict_is_the_references(refined):
    """The TS has one imaginary mode on xTB's own Hessian and the IRC ends carry xTB energies."""
    from horm.calculators.potential import load_potential
    from horm.data.xyz import read_xyz
    from horm.ts.tsopt import TSOptSettings, characterise

    rec, out, _ = refined
    assert rec["ts_success"] and rec["outcome"] is not None
    xtb = load_potential("xtb")
    ts = read_xyz(out / "ts.xyz")[0].to_atoms()
    info = characterise(ts, xtb, TSOptSettings())
    assert info["n_imaginary"] == 1 and info["energy"] == pytest.approx(rec["e_ts"], abs=1e-6)
    irc = read_xyz(out / "irc.xyz")
    for end in (irc[0], irc[-1]):
        a = end.to_atoms()
        a.calc = xtb
        assert a.get_potential_energy() == pytest.approx(end.energy, abs=1e-6)
        assert np.linalg.norm(a.get_forces(), axis=1).max() <= rec["settings"]["refine"]["end_fmax"] + 1e-6
    assert rec["audit"]["agrees"] == (rec["audit"]["outcome"] == rec["outcome"])


class _PairLJ:
    """Lennard-Jones pair energy and its analytic Hessian (float64), the finite-difference target."""

    def __init__(self, eps=0.3, sigma=1.2):
        self.eps, self.sigma = eps, sigma

    def hessian(self, pos):
        n = len(pos)
        h = np.zeros((3 * n, 3 * n))
        for i in range(n):
            for j in range(i + 1, n):
                d = pos[j] - pos[i]
                r = np.linalg.norm(d)
                u = d / r
                sr6 = (self.sigma / r) ** 6
                d1 = 4 * self.eps * (-12 * sr6 ** 2 + 6 * sr6) / r
                d2 = 4 * self.eps * (156 * sr6 ** 2 - 42 * sr6) / r ** 2
                blk = d2 * np.outer(u, u) + d1 / r * (np.eye(3) - np.outer(u, u))
                for a, b, s in ((i, i, 1), (j, j, 1), (i, j, -1), (j, i, -1)):
                    h[3 * a:3 * a + 3, 3 * b:3 * b + 3] += s * blk
        return h


def test_plain_ase_calculator_gets_a_finite_difference_hessian_counted_as_6n_force_calls():
    from horm.calculators.potential import load_potential

    calc = load_potential("ase:ase.calculators.lj:LennardJones", kwargs={"epsilon": 0.3, "sigma": 1.2, "rc": 50.0})
    pos = np.array([[0.0, 0.0, 0.0], [1.4, 0.1, 0.0], [0.3, 1.35, 0.2], [1.1, 1.0, 1.2]])
    from ase import Atoms

    atoms = Atoms("Ar4", positions=pos)
    h = calc.get_hessian(atoms)
    exact = _PairLJ().hessian(pos)
    assert np.abs(exact).max() > 1.0  # a non-trivial check
    err = np.abs(h - exact).max()
    assert err < 2e-3 * np.abs(exact).max()
    assert calc.counts == {"energy_forces": 0, "hessian": 1, "hessian_force_calls": 6 * len(atoms)}
    assert calc.is_reference and calc.call_counts()["hessian_force_calls"] == 24
    # a central difference: halving the step quarters the error
    calc.fd_step /= 2
    assert np.abs(calc.fd_hessian(atoms) - exact).max() < err / 3


@pytest.mark.parametrize("spec,expect", [
    ("ase:no_such_module_xyz:Calc", "cannot import no_such_module_xyz"),
    ("ase:ase.calculators.lj:NoSuch", "has no callable NoSuch"),
    ("ase:ase.calculators.lj", "expected ase:package.module:factory"),
    ("gfn9", "potential 'gfn9'"),
])
def test_a_bad_refine_spec_is_one_line(tmp_path, spec, expect):
    rxn = tmp_path / "r.xyz"
    rxn.write_text(_reaction().read_text())
    res = CliRunner().invoke(app, ["ts", "run", str(rxn), "-p", "xtb", "--refine", spec, "-o", str(tmp_path / "o")])
    assert res.exit_code != 0
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and expect in lines[0], res.output
    assert "Traceback" not in res.output


def test_refine_options_need_refine(tmp_path):
    res = CliRunner().invoke(app, ["ts", "run", str(_reaction()), "-p", "xtb", "--fallback", "-o", str(tmp_path / "o")])
    assert res.exit_code != 0 and "need --refine" in res.output
    bad = tmp_path / "kw.yaml"
    bad.write_text("[1, 2]\n")
    res = CliRunner().invoke(app, ["ts", "run", str(_reaction()), "-p", "xtb", "--refine",
                                   "ase:ase.calculators.lj:LennardJones", "--refine-kwargs", str(bad),
                                   "-o", str(tmp_path / "o")])
    assert res.exit_code != 0 and "expected a mapping of keyword arguments" in res.output


@needs_xtb
def test_sigkill_mid_refined_run_leaves_a_valid_partial_record(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "horm.cli", "ts", "run", str(_reaction()), "-p", MODEL,
                             "--refine", "xtb", "-o", str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    rec_path = out / "record.json"
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if rec_path.exists() and "path" in json.loads(rec_path.read_text()).get("stages", {}):
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # the proposer's TS search is running now
    finally:
        proc.wait(timeout=30)
    rec = json.loads(rec_path.read_text())
    assert rec["status"] == "running" and rec["reference"] == "xtb" and "path" in rec["stages"]
    assert rec["settings"]["refine"]["strategy"] in ("ts", "band", "auto")
    assert not list(out.glob("*.tmp"))


@needs_xtb
def test_refined_benchmark_reports_reference_calls_against_the_reference_alone(tmp_path):
    """xTB proposing for xTB: the refined benchmark's cost lines, and a rerun with another
    reference refused."""
    from horm.errors import HormError
    from horm.ts.benchmark import run_benchmark
    from horm.ts.report import benchmark_report

    rxns = [_reaction()]
    base = run_benchmark(rxns, "xtb", tmp_path / "alone", workers=1)
    assert base[0]["reference_calls"]["energy_forces"] == base[0]["model_calls"]["energy_forces"] > 0
    recs = run_benchmark(rxns, "xtb", tmp_path / "refined", workers=1, refine="xtb")
    assert recs[0]["reference"] == "xtb" and "refine-ts" in recs[0]["stages"]
    rep = benchmark_report(tmp_path / "refined", tmp_path / "alone")
    assert rep["name"] == "xtb → xtb"
    cost = rep["reference"]["cost"]
    assert cost["energy_forces_reference"] == base[0]["reference_calls"]["energy_forces"]
    assert cost["energy_forces_run"] == recs[0]["reference_calls"]["energy_forces"]
    assert any("reference calls" in ln for ln in rep["lines"])
    with pytest.raises(HormError, match="refined with 'xtb', not 'dft'"):
        run_benchmark(rxns, "xtb", tmp_path / "refined", workers=1, refine="dft")
    # the proposals of the reference-only run, refined again without searching: same TS stage
    again = run_benchmark(rxns, "xtb", tmp_path / "reused", workers=1, refine="xtb", proposals=tmp_path / "alone")
    st = again[0]["stages"]
    assert st["path"]["reused"] == str((tmp_path / "alone" / _reaction().stem).resolve())
    assert st["path"]["calls"] == {"energy_forces": 0, "hessian": 0}
    assert again[0]["proposal"]["outcome"] == base[0]["outcome"]  # the proposer's own verdict, kept
    assert (tmp_path / "reused" / _reaction().stem / "ts_proposal.xyz").is_file()
    from horm.errors import UsageError

    with pytest.raises(UsageError, match="proposals are by 'xtb'"):
        run_benchmark(rxns, MODEL, tmp_path / "other", workers=1, refine="xtb", proposals=tmp_path / "alone")


H2CO = """4
formaldehyde charge=0 multiplicity=1
C 0.000 0.000 0.000
O 0.000 0.000 1.205
H 0.000 0.940 -0.587
H 0.000 -0.940 -0.587
4
CO + H2 charge=0 multiplicity=1
C 0.000 0.000 0.000
O 0.000 0.000 1.130
H 0.300 0.370 -2.400
H 0.300 -0.370 -2.400
"""


@needs_xtb
def test_refine_dft_end_to_end_on_a_four_atom_reaction(tmp_path):
    """H2CO -> H2 + CO: xTB proposes, ωB97X/6-31G(d) refines, checks (one DFT Hessian) and
    judges; loose settings keep it to a few dozen DFT calls."""
    pytest.importorskip("pyscf")
    rxn = tmp_path / "h2co.xyz"
    rxn.write_text(H2CO)
    (tmp_path / "s.yaml").write_text(
        "refine: {strategy: ts, end_fmax: 0.1, end_max_steps: 40, settled_drop: 0.3, tsopt: {max_steps: 20}}\n"
        "irc: {dx: 0.2, max_steps: 30}\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["ts", "run", str(rxn), "-p", "xtb", "--refine", "dft", "-o", str(out),
                                   "--settings", str(tmp_path / "s.yaml"), "--threads", "1"])
    assert res.exit_code == 0, res.output
    rec = json.loads((out / "record.json").read_text())
    assert rec["reference"] == "dft" and rec["ts_success"], rec["stages"]
    assert rec["stages"]["refine-ts"]["n_imaginary"] == 1
    ref = rec["reference_calls"]
    assert ref["hessian"] >= 1 and 0 < ref["energy_forces"] < 300 and ref["seconds"] > 0
    assert rec["outcome"] == "intended", rec["stages"]


def _point(positions, energy):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    a = Atoms("H3", positions=positions)
    a.calc = SinglePointCalculator(a, energy=energy)
    return a


def test_an_irc_branch_settles_on_the_reactant_or_product_graph_or_on_a_third_one_held():
    """``settled``: below the drop, R's or P's graph stops a branch at once; a third graph stops it
    only with ``elsewhere`` and only once the branch's last points all share it."""
    from horm.ts.refine import settled

    r = _point([[0, 0, 0], [0.7, 0, 0], [4.0, 0, 0]], 0.0)  # H2 + H
    p = _point([[-3.3, 0, 0], [0.7, 0, 0], [1.4, 0, 0]], 0.0)  # H + H2 (the other pair)
    apart = [[0, 0, 0], [3.0, 0, 0], [6.0, 0, 0]]  # three atoms, neither graph
    scales = (1.2,)
    e_ts = 1.0
    plain, held = settled(r, p, 0.2, scales), settled(r, p, 0.2, scales, elsewhere=3)
    assert plain(_point(r.positions, 0.5), e_ts) and plain(_point(p.positions, 0.5), e_ts)
    assert not plain(_point(r.positions, 0.9), e_ts)  # the graph, but not yet 0.2 eV down
    branch = [_point(apart, 0.9 - 0.1 * k) for k in range(3)]
    assert not plain(branch[-1], e_ts, branch)  # a third graph never stops the plain rule
    assert held(branch[-1], e_ts, branch)
    assert not held(branch[-1], e_ts, branch[-2:])  # held by too few points
    mixed = [_point(r.positions, 0.8), *branch[1:]]  # the branch left the reactant only lately
    assert not held(mixed[-1], e_ts, mixed)
