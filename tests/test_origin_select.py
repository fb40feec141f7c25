"""Selecting samples by the sampler stage that made them (``--origin``), on the shipped held-out
split of the larger xTB set, and ``horm evaluate --origin`` end to end."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from horm.cli import app
from horm.data.io import open_dataset, origin_matches, select_origins
from horm.data.store import HessianStore
from horm.data.sample import Sample
from horm.datasets import bundled_split_path
from horm.errors import DataError
from horm.hessian.analysis import n_imaginary, vibrational_analysis


@pytest.fixture(scope="module")
def large_test():
    return open_dataset(bundled_split_path("test", "t1x_xtb_large"))


@pytest.mark.parametrize("origin, prefixes, hit", [
    ("ts", ["ts"], True), ("tsopt:last", ["ts"], False), ("tsopt:last", ["tsopt"], True),
    ("irc:forward:3", ["irc"], True), ("irc:forward:3", ["irc:reverse"], False),
    ("neb:final:img4", ["neb:final"], True), ("neb:final:img4", ["neb:fin"], False),
    ("reactant", ["product", "reactant"], True), ("", ["ts"], False),
])
def test_origin_matches_whole_fields(origin, prefixes, hit):
    assert origin_matches(origin, prefixes) is hit


def test_ts_points_of_the_held_out_split_are_first_order_saddles_at_xtb(large_test):
    """The physics behind ``--origin ts``: every converged xTB TS of the held-out split has exactly
    one imaginary frequency in its own (Eckart-projected) Hessian, so a model's count there is a test."""
    ts = select_origins(large_test, ["ts"], "test.hstore")
    assert len(ts) >= 30 and {s.origin for s in ts} == {"ts"}
    assert len({s.rxn for s in ts}) == len(ts)  # one TS per held-out reaction
    for s in ts:
        freqs, _ = vibrational_analysis(np.asarray(s.hessian, float), np.asarray(s.pos, float), s.numbers)
        assert n_imaginary(freqs) == 1, s.key
    assert ts.level_of_theory == large_test.meta["level_of_theory"]


def test_subset_is_lazy_and_ordered(large_test):
    irc = select_origins(large_test, ["irc:forward", "irc:reverse"], "test.hstore")
    origins = [large_test[i].origin for i in irc.indices]
    assert all(o.startswith("irc:") for o in origins) and irc.indices == sorted(irc.indices)
    n_irc = sum(str(s.origin).startswith("irc:") for s in large_test)
    assert len(irc) == n_irc and irc[0].key == large_test[irc.indices[0]].key
    assert [s.key for s in irc[1:3]] == [large_test[i].key for i in irc.indices[1:3]]


def test_no_match_and_blank_prefix_are_one_line_naming_the_file(tmp_path):
    p = tmp_path / "few.hstore"
    with HessianStore.create(p, "toy") as st:
        for i, origin in enumerate(["neb:iter0:img1", "neb:final:img2", "reactant"]):
            st.append(Sample(numbers=np.array([1, 1]), pos=np.array([[0, 0, 0], [0, 0, 0.74 + 0.01 * i]]),
                             energy=-1.0, origin=origin, key=f"k{i}"))
    ds = open_dataset(p)
    with pytest.raises(DataError) as e:
        select_origins(ds, ["ts"], p)
    msg = str(e.value)
    assert str(p) in msg and "neb (2), reactant (1)" in msg and "\n" not in msg
    with pytest.raises(DataError, match="blank"):
        select_origins(ds, ["  "], p)
    assert [s.key for s in select_origins(ds, ["neb:"], p)] == ["k0", "k1"]  # a trailing ':' is the same prefix


def test_horm_evaluate_origin_counts_imaginary_modes(tmp_path):
    from horm.models.registry import build_model
    from horm.models.files import save_model

    torch.manual_seed(0)
    m = build_model("leftnet", "tiny", hidden_channels=16, num_layers=1)
    m.set_atom_ref({1: -10.7, 6: -48.8, 7: -71.0, 8: -103.0})
    path = save_model(m, tmp_path / "m" / "model.pt")
    out = tmp_path / "eval"
    data = bundled_split_path("test", "t1x_xtb_large")
    res = CliRunner().invoke(app, ["evaluate", str(path), "--data", str(data), "--origin", "ts",
                                   "--max-samples", "2", "--out", str(out), "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "samples with origin ts" in res.output
    with open(out / "table2.csv") as fh:
        rows = {(r[0], r[2]): r[3] for r in csv.reader(fh)}
    n_pred = float(rows[("# imaginary modes, model", "mean")])
    agree = float(rows[("# negative eigenvalues agree", "mean")])
    assert n_pred >= 0 and agree in (0.0, 0.5, 1.0)
    assert agree < 1.0 or n_pred == 1.0  # the reference has exactly one at each
    bad = CliRunner().invoke(app, ["evaluate", str(path), "--data", str(data), "--origin", "saddle",
                                   "--out", str(tmp_path / "e2")])
    assert bad.exit_code != 0 and "no sample has origin saddle" in bad.output and "\n" not in bad.output.strip()


def test_errors_by_origin_benchmark_covers_every_stage(tmp_path):
    """benchmarks/errors_by_origin.py on the shipped held-out split: a row per stage, xTB's TSs
    counted with exactly one imaginary mode, the endpoints with none in the median molecule."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from horm.models.registry import build_model
    from horm.models.files import save_model

    torch.manual_seed(0)
    m = build_model("leftnet", "tiny", hidden_channels=8, num_layers=1)
    path = save_model(m, tmp_path / "m" / "model.pt")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "errors_by_origin.py"
    out = tmp_path / "by_origin.json"
    run = subprocess.run([sys.executable, str(script), str(bundled_split_path("test", "t1x_xtb_large")), "-p",
                          str(path), "--max-per-stage", "3", "--json", str(out)], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    res = json.loads(out.read_text())
    assert set(res) == {"endpoints", "neb-iterations", "neb-final", "ts", "irc"}
    assert all(res[s]["n"] == 3 for s in res)
    assert res["ts"][str(path)]["n_neg_ref_median"] == 1 and res["endpoints"][str(path)]["n_neg_ref_median"] == 0
    assert sum(line.startswith(("endpoints", "ts ", "irc ")) for line in run.stdout.splitlines()) == 3
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "none.hstore"), "-p", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "none.hstore: no such file" in bad.stderr
