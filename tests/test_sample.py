"""Reaction-path sampling with xTB: NEB iterations (T1x-style) and IRC points (RGD1-style)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from horm.data.xyz import read_reaction


@pytest.fixture(scope="module")
def small_reaction(t1x_dir):
    """The smallest shared T1x reaction (5 atoms)."""
    files = sorted(t1x_dir.glob("rxn*.xyz"))
    return min(files, key=lambda f: (read_reaction(f)[0].natoms, f.name))


def _calc(**settings):
    from horm.label import get_engine
    from horm.calculators.potential import HormCalculator

    return HormCalculator(get_engine("xtb", **settings), name="xtb")


def test_neb_sampler_keeps_intermediate_iterations(small_reaction):
    from horm.sample.neb import NebSampleSettings, sample_neb

    r, p = read_reaction(small_reaction)
    s = NebSampleSettings(n_images=6, neb_steps=6, ci_steps=6, keep_every=3, fraction=0.5)
    res = sample_neb(r, p, _calc(), s)
    assert res.failures == [] and res.info["snapshots"] >= 3
    origins = [x.origin for x in res.samples]
    keys = [x.key for x in res.samples]
    assert len(set(keys)) == len(keys) and all(x.rxn == r.rxn for x in res.samples)
    assert origins[:2] == ["reactant", "product"]
    final = [o for o in origins if o.startswith("neb:final:")]
    assert final == [f"neb:final:img{k}" for k in range(1, 5)]
    inter = [o for o in origins if o.startswith("neb:iter")]
    assert len(inter) == res.info["kept_intermediate"] == round(0.5 * 4 * res.info["snapshots"])
    assert "neb:iter0:" in " ".join(inter) or len({o.split(":")[1] for o in inter}) > 1
    # reactant geometry is the input's, and the band geometries are distinct
    np.testing.assert_allclose(res.samples[0].pos, r.pos, atol=1e-9)
    assert len({np.round(x.pos, 6).tobytes() for x in res.samples}) == len(res.samples)
    # the same seed picks the same snapshots
    again = sample_neb(r, p, _calc(), s)
    assert [x.origin for x in again.samples] == origins


def test_neb_sampler_records_scf_failure_instead_of_crashing(small_reaction):
    from horm.sample.neb import NebSampleSettings, sample_neb

    r, p = read_reaction(small_reaction)
    res = sample_neb(r, p, _calc(max_iter=1, retry=False), NebSampleSettings(n_images=5, neb_steps=3, ci_steps=0))
    assert [f["stage"] for f in res.failures] == ["neb"]
    assert res.failures[0]["key"] == f"{r.rxn}:neb"
    assert not any(x.origin.startswith("neb:final") for x in res.samples)


def test_irc_sampler_descends_from_a_saddle(t1x_dir):
    """RGD1-style: the TS has one imaginary mode and every IRC point lies below it."""
    from horm.label import get_engine
    from horm.sample.irc import IrcSampleSettings, sample_irc

    f = t1x_dir / "rxn4440.xyz"  # 5 atoms; xTB finds its saddle in ~15 Sella steps
    if not f.exists():
        pytest.skip(f"{f} not in the shared set")
    r, p = read_reaction(f)
    res = sample_irc(r, p, _calc(), IrcSampleSettings(n_images=6, neb_steps=15, ts_steps=30, irc_steps=8, k=3))
    assert res.failures == [], res.failures
    assert res.info["ts"]["n_imaginary"] == 1
    origins = [x.origin for x in res.samples]
    assert origins[0] == "ts"
    fwd = [o for o in origins if o.startswith("irc:forward:")]
    rev = [o for o in origins if o.startswith("irc:reverse:")]
    assert 1 <= len(fwd) <= 3 and 1 <= len(rev) <= 3
    eng = get_engine("xtb")
    e = [eng.compute(x, want=("energy",)).energy for x in res.samples]
    assert all(ei < e[0] for ei in e[1:]), e


def test_cli_sample_writes_origins(tmp_path, small_reaction):
    from horm.cli import app
    from horm.data.xyz import read_xyz

    out = tmp_path / "geoms.xyz"
    res = CliRunner().invoke(app, ["sample", str(small_reaction), "--method", "neb", "--engine", "xtb",
                                   "--out", str(out), "--steps", "4", "--keep-every", "2", "--fraction", "0.25"])
    assert res.exit_code == 0, res.output
    frames = read_xyz(out)
    assert len(frames) >= 10
    assert all(f.rxn == small_reaction.stem and f.origin for f in frames)
    assert {"reactant", "product"} <= {f.origin for f in frames}
    assert not out.with_name(out.name + ".failures.jsonl").exists()
    bad = CliRunner().invoke(app, ["sample", str(small_reaction), "--method", "gsm", "--out", str(tmp_path / "x.xyz")])
    assert bad.exit_code != 0 and "neb, irc" in bad.output
