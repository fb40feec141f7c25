"""The labelling runner with the real xTB engine: Ray, kill/resume, failures, CLI.

Physics stated: labels are those of the engine itself (same energy whichever backend
computed them), the Hessian is symmetric and obeys the translational sum rule, and a
non-converged SCF never becomes data.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import numpy as np
import pytest
from typer.testing import CliRunner

from horm.data.integrity import decode_meta
from horm.data.sample import Sample
from horm.data.store import HessianStore
from horm.data.xyz import write_xyz

from _molecules import ase_molecules as _molecules

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _store_count(path: Path) -> int:
    """Count committed samples while another process writes (LMDB reader with the lock file)."""
    if not path.exists() or path.stat().st_size < 8192:
        return 0
    try:
        env = lmdb.open(str(path), subdir=False, readonly=True, lock=True, max_readers=8)
    except lmdb.Error:
        return 0
    try:
        with env.begin() as txn:
            raw = txn.get(b"__meta__")
            return int(decode_meta(raw, str(path))[0]["count"]) if raw else 0
    finally:
        env.close()


@pytest.mark.slow
def test_local_ray_two_workers_labels_like_the_engine(tmp_path):
    """A real local Ray (2 workers): every geometry labelled once, same labels as in-process."""
    pytest.importorskip("ray")
    from horm.label import get_engine
    from horm.label.runner import label

    geos = _molecules(["H2O", "NH3", "CH4", "H2CO", "HCN", "CH3OH"])
    src = write_xyz(tmp_path / "g.xyz", geos)
    eng = get_engine("xtb")
    s = label(src, eng, tmp_path / "ray.hstore", workers=2, ray_address="local", show_progress=False)
    assert (s.backend, s.labelled, s.failed) == ("ray", 6, 0)
    with HessianStore.open(tmp_path / "ray.hstore") as st:
        assert len(st) == 6 and {k.split("#")[0] for k in st.keys()} == {f"g.xyz:{i}" for i in range(6)}
        by_key = {x.key.split("#")[0]: x for x in st}
    ref = eng.compute(geos[3])  # H2CO, in this process
    got = by_key["g.xyz:3"]
    assert got.energy == pytest.approx(ref.energy, abs=1e-6)
    np.testing.assert_allclose(got.forces, ref.forces, atol=1e-5)
    for x in by_key.values():
        h = np.asarray(x.hessian, dtype=float)
        n = x.natoms
        assert np.abs(h - h.T).max() < 1e-3  # symmetric (float32 storage)
        # translation invariance: sum over atoms j of the (i, j) blocks vanishes
        sum_rule = h.reshape(n, 3, n, 3).sum(axis=2)
        assert np.abs(sum_rule).max() < 0.05, np.abs(sum_rule).max()


def test_killed_run_resumes_without_loss_or_duplicates(tmp_path):
    """SIGKILL mid-run, restart: the committed samples survive, the total is exact, no duplicates.

    Also the done-means check: `horm label` on 20 geometries, then `horm data info` shows 20.
    """
    from horm.cli import app

    geos = _molecules(["CH3CH2OH", "CH3CHO", "C2H6"], n=20, seed=1)
    src = write_xyz(tmp_path / "twenty.xyz", geos)
    out = tmp_path / "s.hstore"
    cmd = [sys.executable, "-m", "horm.cli", "label", str(src), "--engine", "xtb", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t0 = time.time()
    while _store_count(out) < 3 and proc.poll() is None and time.time() - t0 < 90:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _store_count(out)
    assert 3 <= before < 20, f"the kill came too late ({before} stored); the test needs a mid-run kill"
    with HessianStore.open(out) as st:
        keys_before = st.keys()
        assert len(keys_before) == len(st) == before
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"skipped {before} (already stored)" in done.stdout
    assert f"labelled {20 - before}," in done.stdout
    with HessianStore.open(out) as st:
        keys = [x.key for x in st]
        assert len(st) == 20 and len(keys) == 20 and len(set(keys)) == 20
        assert keys_before <= set(keys) and st.keys() == set(keys)
        assert all(x.hessian is not None and x.hessian.shape == (3 * x.natoms,) * 2 for x in st)
        assert st.failures() == []
    res = CliRunner().invoke(app, ["data", "info", str(out)])
    assert res.exit_code == 0, res.output
    assert any(line.split()[:2] == ["samples", "20"] for line in res.output.replace("│", " ").splitlines())


def test_unconverged_scf_is_a_failure_not_data(tmp_path):
    """max 1 SCF iteration: recorded in the failures table, nothing stored; a retry with the
    default settings (on a 2-process pool) labels it and clears the failure row."""
    from horm.label import get_engine
    from horm.label.runner import label

    src = write_xyz(tmp_path / "w.xyz", _molecules(["H2O", "NH3"]))
    out = tmp_path / "f.hstore"
    s = label(src, get_engine("xtb", max_iter=1, retry=False), out, show_progress=False)
    assert (s.labelled, s.failed) == (0, 2)
    with HessianStore.open(out) as st:
        assert len(st) == 0
        fails = {f["key"]: f for f in st.failures()}
        assert {k.split("#")[0] for k in fails} == {"w.xyz:0", "w.xyz:1"}
        assert all("converge" in f["reason"].lower() or "scf" in f["reason"].lower() for f in fails.values())
    again = label(src, get_engine("xtb"), out, show_progress=False)
    assert (again.labelled, again.skipped_failed) == (0, 2)  # failures are not retried by default
    retry = label(src, get_engine("xtb"), out, retry_failed=True, workers=2, show_progress=False)
    assert (retry.backend, retry.labelled, retry.failed) == ("process", 2, 0)
    with HessianStore.open(out) as st:
        assert len(st) == 2 and st.failures() == []


def test_bad_geometry_and_level_mismatch(tmp_path):
    """Atoms on top of each other are a recorded failure; a store of another level is refused."""
    from horm.errors import DataError
    from horm.label import get_engine
    from horm.label.runner import label

    bad = Sample(numbers=np.array([1, 1]), pos=np.array([[0.0, 0, 0], [0.1, 0, 0]]))
    src = tmp_path / "bad.xyz"
    src.write_text("2\nbad\nH 0 0 0\nH 0.1 0 0\n")
    out = tmp_path / "b.hstore"
    with pytest.raises(DataError):
        label(src, get_engine("xtb"), out, show_progress=False)  # read_xyz refuses the file itself
    good = write_xyz(tmp_path / "ok.xyz", _molecules(["H2O"]))
    HessianStore.create(out, "some other level").close()
    with pytest.raises(DataError, match="refusing to mix labels: level of theory"):
        label(good, get_engine("xtb"), out, show_progress=False)
    from horm.label.runner import compute_one

    r = compute_one(get_engine("xtb"), bad.copy(key="x"))
    assert r.sample is None and r.reason.startswith("bad geometry")


def test_input_kinds_get_stable_unique_keys(tmp_path, horm_sample_path):
    """HORM LMDB records keep their own keys; a directory of xyz is keyed by file and frame."""
    from horm.label.items import open_items

    n, items = open_items(horm_sample_path)
    keys = [s.key for s in items()]
    assert n == 100 and len(set(keys)) == 100 and keys[0].startswith("horm_sample_100.lmdb:0#")
    d = tmp_path / "dir"
    write_xyz(d / "a.xyz", _molecules(["H2O", "NH3"]))
    write_xyz(d / "b.xyz", _molecules(["CH4"]))
    n, items = open_items(d)
    got = [(s.key, s.rxn) for s in items()]
    assert n == 3 and [(k.split("#")[0], r) for k, r in got] == [("a.xyz:0", "a"), ("a.xyz:1", "a"), ("b.xyz:0", "b")]
    assert [s.key for s in items()] == [k for k, _ in got]  # the same keys on a second pass
