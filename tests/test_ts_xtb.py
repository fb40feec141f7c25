"""A real T1x reaction with GFN2-xTB as the potential: path → TS → IRC ends `intended`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sella")
pytest.importorskip("tblite")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
RXN = SHARED / "data" / "t1x_val_reactions" / "rxn2587.xyz"  # HCCCN isomerisation, 5 atoms


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    if not RXN.exists():
        pytest.skip(f"shared reaction set not found at {RXN}")
    from horm.data.xyz import read_reaction
    from horm.calculators.potential import load_potential
    from horm.ts.workflow import run_reaction

    out = tmp_path_factory.mktemp("ts_xtb")
    r, p = read_reaction(RXN)
    rec = run_reaction(r.to_atoms(), p.to_atoms(), load_potential("xtb"), out_dir=out, name=RXN.stem)
    return rec, out


def test_xtb_ts_search_is_intended(record):
    rec, _ = record
    assert rec["path_success"] and rec["ts_success"] and rec["irc_success"], rec["stages"]
    assert rec["outcome"] == "intended"
    ts = rec["stages"]["tsopt"]
    assert ts["n_imaginary"] == 1 and ts["imaginary_freqs_cm1"][0] < -100
    assert ts["fmax"] < 0.02
    # the TS lies above both relaxed IRC ends, and the barrier is positive
    irc = rec["stages"]["irc"]
    assert rec["e_ts"] > max(irc["energy_forward_end"], irc["energy_reverse_end"])
    assert rec["barrier_kcal_mol"] > 0
    # the model Hessian was used during the TS search (at least once per step after the first)
    assert ts["calls"]["hessian"] >= ts["steps"]


def test_xtb_ts_search_writes_its_files(record):
    from horm.data.xyz import read_xyz

    rec, out = record
    for name in ("path.xyz", "ts.xyz", "irc.xyz", "record.json"):
        assert (out / name).exists(), name
    ts = read_xyz(out / "ts.xyz")[0]
    assert ts.energy == pytest.approx(rec["e_ts"])
    irc = read_xyz(out / "irc.xyz")
    e = np.array([s.energy for s in irc])
    k = int(np.argmax(e))
    assert 0 < k < len(e) - 1  # the TS is the highest point inside the IRC


def test_molecular_irc_converges_at_its_minima_and_stops_there(tmp_path):
    """An 8-atom T1x reaction (shipped set): both IRC branches reach a minimum (forces below
    the IRC's fmax, below the TS) well inside max_steps and are called converged. Sella's own
    test needs a positive lowest Hessian eigenvalue, which the zero modes of a molecule deny,
    so before the force test every branch walked on to max_steps and none "converged"."""
    from horm.data.xyz import read_reaction
    from horm.datasets import bundled_path
    from horm.calculators.potential import load_potential
    from horm.ts.irc import DESCENT_EV
    from horm.ts.workflow import run_reaction

    rxn = bundled_path("t1x_xtb_large") / "ts_reactions" / "rxn296.xyz"
    r, p = read_reaction(rxn)
    rec = run_reaction(r.to_atoms(), p.to_atoms(), load_potential("xtb"), out_dir=tmp_path, name="rxn296")
    irc = rec["stages"]["irc"]
    assert rec["ts_success"] and irc["converged"] == {"forward": True, "reverse": True}, irc
    assert rec["irc_converged"] and rec["outcome"] == "intended"
    max_steps = rec["settings"]["irc"]["max_steps"]
    assert all(0 < irc["steps"][d] < max_steps for d in ("forward", "reverse")), irc["steps"]
    for d in ("forward", "reverse"):
        assert irc[f"energy_{d}_end"] < rec["e_ts"] - DESCENT_EV
