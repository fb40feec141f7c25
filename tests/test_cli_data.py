"""`horm data` commands end to end through the CLI."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from typer.testing import CliRunner

from horm.cli import app
from horm.data.store import HessianStore

runner = CliRunner(env={"COLUMNS": "200"})


def test_info_on_published_sample(horm_sample_path):
    r = runner.invoke(app, ["data", "info", str(horm_sample_path)])
    assert r.exit_code == 0, r.output
    assert "│ samples          │ 100" in r.output or " 100 " in r.output
    assert "8–21" in r.output and "H C N O" in r.output and "eV/Å²" in r.output


def test_convert_stats_split(tmp_path, horm_sample_path):
    dst = tmp_path / "s.hstore"
    r = runner.invoke(app, ["data", "convert", str(horm_sample_path), str(dst)])
    assert r.exit_code == 0, r.output
    assert "wrote 100 samples" in r.output
    r = runner.invoke(app, ["data", "convert", str(horm_sample_path), str(dst)])
    assert r.exit_code == 2 and "exists" in r.output
    r = runner.invoke(app, ["data", "stats", str(dst), "--out", str(tmp_path / "fig")])
    assert r.exit_code == 0, r.output
    for name in ("fig1_natoms.png", "fig1_energy.png", "fig1_nimag.png"):
        png = tmp_path / "fig" / name
        assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"


def test_split_is_deterministic_and_by_reaction(tmp_path):
    st = HessianStore.create(tmp_path / "many.hstore", "toy")
    from horm.data.sample import Sample

    rng = np.random.default_rng(0)
    samples = []
    for rxn in range(40):
        for k in range(3):
            samples.append(Sample(numbers=np.array([1, 1]), pos=np.array([[0, 0, 0], [0.74 + 0.01 * k, 0, 0]]),
                                  energy=float(rng.normal()), rxn=f"r{rxn}", key=f"r{rxn}-{k}"))
    st.extend(samples)
    st.close()
    outs = []
    for rep in range(2):
        r = runner.invoke(app, ["data", "split", str(tmp_path / "many.hstore"), "--out", str(tmp_path / f"s{rep}"),
                                "--val", "0.25", "--seed", "3"])
        assert r.exit_code == 0, r.output
        tr = HessianStore.open(tmp_path / f"s{rep}" / "train.hstore")
        va = HessianStore.open(tmp_path / f"s{rep}" / "val.hstore")
        outs.append(sorted(s.key for s in va))
        assert len(tr) + len(va) == 120 and 0 < len(va) < 120
        assert not ({s.rxn for s in tr} & {s.rxn for s in va})
        tr.close()
        va.close()
    assert outs[0] == outs[1]


def test_bad_input_is_one_line_and_exit_1(tmp_path):
    """A DataError is one line and exit 1 (2 is for usage errors)."""
    bad = tmp_path / "bad.xyz"
    bad.write_text("2\nc\nO 0 0 0\nZz 1 0 0\n")
    r = subprocess.run([sys.executable, "-m", "horm.cli", "data", "info", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "bad.xyz" in r.stderr and "unknown element 'Zz'" in r.stderr and "Traceback" not in r.stderr


def test_streaming_split_matches_the_reaction_mask_and_fig1_streams(tmp_path, horm_sample_path):
    """split_dataset in small batches puts each sample where reaction_split says; Fig. 1
    quantities from one pass equal those from a list of samples."""
    from horm.data.io import open_dataset
    from horm.data.splits import reaction_split, split_dataset
    from horm.data.stats import fig1_quantities

    samples = list(open_dataset(horm_sample_path))
    for i, s in enumerate(samples):  # the sample file is one reaction: make 34 of them
        s.rxn = f"r{i // 3}"
    with HessianStore.create(tmp_path / "in.hstore", "ωB97X/6-31G(d)") as st:
        st.extend(samples)
    ds = open_dataset(tmp_path / "in.hstore")
    res = split_dataset(tmp_path / "in.hstore", tmp_path / "s", 0.3, seed=1, batch=7)
    mask = reaction_split([s.rxn for s in samples], 0.3, 1)  # what a per-sample hash of the id says
    with HessianStore.open(res["val"]["path"]) as va, HessianStore.open(res["train"]["path"]) as tr:
        assert [s.key for s in va] == [s.key for s, m in zip(samples, mask) if m]  # order kept
        assert [s.key for s in tr] == [s.key for s, m in zip(samples, mask) if not m]
        np.testing.assert_array_equal(va[0].hessian, [s for s, m in zip(samples, mask) if m][0].hessian)
    assert res["val"]["reactions"] + res["train"]["reactions"] == 34 and 0 < res["val"]["samples"] < 100
    assert res["notes"] == []
    q_stream = fig1_quantities(iter(ds))
    assert len(q_stream["n_imag"]) == 100 and set(np.unique(q_stream["n_imag"])) <= set(range(10))
    q_no_imag = fig1_quantities(iter(ds), imaginary=False)
    assert "n_imag" not in q_no_imag
    np.testing.assert_allclose(q_no_imag["ref_energy"], q_stream["ref_energy"])


def test_split_of_a_one_reaction_file_says_it_is_per_sample_and_matches_train(tmp_path, horm_sample_path):
    """The shared HORM sample carries rxn == 1 everywhere: `data split` says it splits per sample
    (never all 100 to one side silently), and puts in val exactly what `horm train` would."""
    from horm.train.config import DataSection
    from horm.train.data import load_train_data

    r = CliRunner().invoke(app, ["data", "split", str(horm_sample_path), "--out", str(tmp_path / "s"),
                                 "--val", "0.2", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert "one reaction id" in r.output and "per sample" in r.output
    data = load_train_data(DataSection(train=str(horm_sample_path), val_fraction=0.2, split_seed=3))
    try:
        want = [data.val.source[int(i)].pos for i in data.val.indices]
    finally:
        data.close()
    with HessianStore.open(tmp_path / "s" / "val.hstore") as va, HessianStore.open(tmp_path / "s" / "train.hstore") as tr:
        assert 0 < len(va) == len(want) < 100 and len(va) + len(tr) == 100
        assert all(np.array_equal(s.pos, p) for s, p in zip(va, want))
