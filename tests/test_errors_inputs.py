"""Every bad input gets one clear line: exit 2 for usage, 1 for data; real bugs keep a traceback.

Each test here was run against main (c1d7efa) before the change and failed there: charges
like ``abc``/``1.0``/``1.5`` were dropped or truncated, the N x N distance matrix peaked at
~800 MB for 5,000 atoms, a bare ValueError was turned into a "usage" line, ``--timeout -5``
and ``--ts-steps 0`` were accepted, ``optim.lr=inf`` trained, ``train model=leftnet`` and
``ts run --settings missing.yaml`` gave tracebacks, ``ts run --out FILE`` failed only after
the path stage, ``convert --overwrite`` onto a folder gave a traceback, and an infinite
loss weight saved a model with non-finite weights and exited 0.
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from horm.cli import app
from horm.cli._common import friendly
from horm.data.sample import MAX_ATOMS, Sample
from horm.data.xyz import read_xyz
from horm.errors import DataError, HormError, UsageError

runner = CliRunner()
WATER = "O 0 0 0.117\nH 0 0.757 -0.467\nH 0 -0.757 -0.467\n"


def _one_line_error(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) > len("error: ") + 5, output
    assert "Traceback" not in output
    return lines[0]


@pytest.mark.parametrize("comment, bad", [("charge=abc", "charge='abc'"), ("charge=1.0", "charge='1.0'"),
                                          ("mult=two", "mult='two'"), ("charge=1 multiplicity=2.5", "2.5")])
def test_xyz_charge_and_multiplicity_are_integers_or_an_error(tmp_path, comment, bad):
    f = tmp_path / "m.xyz"
    f.write_text(f"3\nok\n{WATER}3\n{comment}\n{WATER}")
    with pytest.raises(DataError) as exc:
        read_xyz(f)
    assert "m.xyz: frame 1" in str(exc.value) and bad in str(exc.value)


def test_extxyz_fractional_charge_is_an_error_not_truncated(tmp_path):
    f = tmp_path / "m.extxyz"
    f.write_text(f"3\nProperties=species:S:1:pos:R:3 charge=1.5 energy=-1.0\n{WATER}")
    with pytest.raises(DataError, match=r"m.extxyz: frame 0: charge='1.5' is not an integer"):
        read_xyz(f)
    f.write_text(f"3\nProperties=species:S:1:pos:R:3 charge=-1 multiplicity=2 energy=-1.0\n{WATER}")
    s = read_xyz(f)[0]
    assert (s.charge, s.multiplicity) == (-1, 2)


def test_atom_count_cap_and_neighbour_search_distance_check(tmp_path):
    f = tmp_path / "big.xyz"
    f.write_text(f"{MAX_ATOMS + 1}\nhuge\nO 0 0 0\n")
    with pytest.raises(DataError, match=f"big.xyz: frame 0.*{MAX_ATOMS + 1} atoms exceed the limit"):
        read_xyz(f)
    # 5,000 atoms on a 1.1 Å grid with one pair 0.3 Å apart: found, with small memory
    g = np.stack(np.meshgrid(*[np.arange(18)] * 3, indexing="ij"), -1).reshape(-1, 3)[:5000] * 1.1
    g[4321] = g[1234] + [0.3, 0.0, 0.0]
    s = Sample(numbers=np.ones(5000, dtype=np.int64), pos=g)
    tracemalloc.start()
    with pytest.raises(DataError, match=r"atoms 1234 and 4321 are 0.300 Å apart"):
        s.validate("grid")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50e6, f"validate peaked at {peak / 1e6:.0f} MB"  # the N x N matrix: ~800 MB
    too_many = Sample(numbers=np.ones(MAX_ATOMS + 1, dtype=np.int64), pos=np.zeros((MAX_ATOMS + 1, 3)))
    with pytest.raises(DataError, match="exceed the limit"):
        too_many.validate("x")


def test_friendly_keeps_bugs_as_tracebacks_and_sorts_exit_codes(monkeypatch, capsys):
    def boom(exc):
        @friendly
        def cmd():
            raise exc
        return cmd

    with pytest.raises(ValueError, match="deep numpy bug"):  # not disguised as a usage error
        boom(ValueError("deep numpy bug"))()
    for exc, code in ((UsageError("--x: bad"), 2), (DataError("f.xyz", "broken"), 1), (HormError(""), 1)):
        with pytest.raises(typer.Exit) as e:
            boom(exc)()
        assert e.value.exit_code == code
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip()) > len("error: ")  # never an empty message
    monkeypatch.setenv("HORM_DEBUG", "1")
    with pytest.raises(DataError):
        boom(DataError("f.xyz", "broken"))()


def test_options_are_checked_at_parse_time(tmp_path):
    xyz = tmp_path / "w.xyz"
    xyz.write_text(f"3\nw\n{WATER}")
    r = runner.invoke(app, ["label", str(xyz), "--engine", "xtb", "--out", str(tmp_path / "s.hstore"),
                            "--timeout", "-5"])
    assert r.exit_code == 2 and "must be > 0" in r.output and not (tmp_path / "s.hstore").exists()
    rxn = tmp_path / "rxn.xyz"
    rxn.write_text(f"3\nR\n{WATER}3\nP\n{WATER}")
    r = runner.invoke(app, ["ts", "run", str(rxn), "-p", "xtb", "--out", str(tmp_path / "o"), "--ts-steps", "0"])
    assert r.exit_code == 2 and not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, needle", [
    (["optim.lr=inf"], "expected a finite number"),
    (["loss.forces=nan"], "expected a finite number"),
    (["model=leftnet"], "names a section"),
])
def test_train_config_errors_are_one_line_exit_2(tmp_path, horm_sample_path, args, needle):
    r = subprocess.run([sys.executable, "-m", "horm.cli", "train", "--data", str(horm_sample_path),
                        "--out", str(tmp_path / "run"), *args], capture_output=True, text=True)
    assert r.returncode == 2 and needle in _one_line_error(r.stderr), r.stderr


def test_ts_run_checks_out_and_settings_before_any_work(tmp_path):
    rxn = tmp_path / "rxn.xyz"
    rxn.write_text(f"3\nR\n{WATER}3\nP\n{WATER.replace('0.117', '0.120')}")
    occupied = tmp_path / "taken"
    occupied.write_text("x")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tsopt:\n  max_steps: abc\n")
    for extra, needle in (([], "exists and is not a folder"),
                          (["--settings", str(tmp_path / "missing.yaml")], "missing.yaml: no such file"),
                          (["--settings", str(bad)], "tsopt.max_steps='abc' is not valid")):
        out = occupied if not extra else tmp_path / "o"
        r = subprocess.run([sys.executable, "-m", "horm.cli", "ts", "run", str(rxn), "-p", "xtb", "--out", str(out),
                            *extra], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and needle in _one_line_error(r.stderr), r.stderr
    assert occupied.read_text() == "x"


def test_convert_overwrite_onto_a_folder_is_refused(tmp_path, horm_sample_path):
    d = tmp_path / "dir.hstore"
    d.mkdir()
    (d / "keep").write_text("x")
    r = subprocess.run([sys.executable, "-m", "horm.cli", "data", "convert", str(horm_sample_path), str(d),
                        "--overwrite"], capture_output=True, text=True)
    assert r.returncode == 2 and "is a folder" in _one_line_error(r.stderr)
    assert (d / "keep").read_text() == "x"


def test_non_finite_loss_stops_training_and_saves_no_model(tmp_path, horm_sample_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "horm.cli", "train", "--data", str(horm_sample_path), "--out", str(out),
                        "model.name=leftnet", "model.preset=tiny", "model.overrides.hidden_channels=8",
                        "model.overrides.num_layers=1", "trainer.progress_bar=false", "trainer.max_steps=3",
                        "loss.energy=1e308"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "error: non-finite loss inf at step 0" in r.stderr and "Traceback" not in r.stderr
    assert not (out / "model.pt").exists()


def test_model_file_with_a_bad_architecture_is_a_data_error(tmp_path):
    """The architecture settings inside a model file are data, not the user's options."""
    import torch

    from horm.models.registry import build_model
    from horm.models.files import load_model, save_model

    p = tmp_path / "bad.pt"
    save_model(build_model("leftnet", "tiny"), p)
    blob = torch.load(p, weights_only=True)
    blob["config"] = {**blob["config"], "graph": "nonsense"}
    torch.save(blob, p)
    with pytest.raises(DataError, match=r"bad.pt: model config is not usable \(model.graph='nonsense' is not valid; valid: radius, full"):
        load_model(p)
