"""benchmarks/make_synthetic_horm.py: synthetic samples in the published HORM format.

The written records must decode with the safe reader and with plain pickle + torch + stub PyG
classes to the same tensors; their labels must be the source's moved to first order; and the
refusals (existing output, too little disk) are one line each and leave nothing behind.
"""

from __future__ import annotations

import importlib.util
import pickle
import sys
from pathlib import Path

import lmdb
import numpy as np
import pytest

from horm.data.horm_lmdb import HormLmdb, safe_loads

REPO = Path(__file__).resolve().parents[1]
N = 300
PER = 20


def _script():
    """The benchmark script as a module (registered in sys.modules, as its dataclasses need)."""
    name = "make_synthetic_horm"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


@pytest.fixture(scope="module")
def synth(horm_sample_path, tmp_path_factory):
    mod = _script()
    out = tmp_path_factory.mktemp("synth") / "synth.lmdb"
    res = mod.make_synthetic(N, out, horm_sample_path, seed=3, per_reaction=PER, show_progress=False)
    return mod, out, res


@pytest.fixture(scope="module")
def source(horm_sample_path):
    with HormLmdb(horm_sample_path) as ds:
        return [ds.record(i) for i in range(len(ds))], [ds.raw(i) for i in range(len(ds))]


def _source_of(i: int, n_src: int) -> int:
    return (i // PER) % n_src


def test_every_sample_reads_with_first_order_labels(synth, source):
    mod, out, res = synth
    recs, _ = source
    assert res.n == N and out.stat().st_size == res.bytes and res.bytes <= res.estimate
    with HormLmdb(out) as ds:
        assert len(ds) == N
        samples = list(ds)  # every record validates through the safe reader
        got = [ds.record(i) for i in range(N)]
    for i, (s, r) in enumerate(zip(samples, got)):
        src = recs[_source_of(i, len(recs))]
        n = src["charges"].size
        assert s.numbers.size == n and np.array_equal(r["charges"], src["charges"])
        assert np.isfinite(s.forces).all() and np.isfinite(s.energy)
        d = r["pos"].astype(np.float64).reshape(-1) - src["pos"].astype(np.float64).reshape(-1)
        assert 0.005 < d.std() < 0.05  # ~0.02 Å displacements
        h = src["hessian"].astype(np.float64).reshape(3 * n, 3 * n)
        f0 = src["forces"].astype(np.float64).reshape(-1)
        np.testing.assert_allclose(r["forces"].reshape(-1), f0 - h @ d, atol=2e-3)
        assert not np.allclose(r["forces"].reshape(-1), f0, atol=1e-3)
        de = -f0 @ d + 0.5 * d @ h @ d
        assert abs(float(r["energy"]) - (float(src["energy"]) + de)) < 3e-3
        assert abs(float(r["ae"]) - (float(src["ae"]) + de)) < 1e-4
        assert np.array_equal(r["hessian"], src["hessian"]) and np.array_equal(r["one_hot"], src["one_hot"])
        assert int(r["rxn"]) == int(src["rxn"]) * mod.RXN_BASE + i // PER


def test_reactions_group_one_composition(synth):
    _, out, _ = synth
    with HormLmdb(out) as ds:
        by_rxn: dict = {}
        for s in ds:
            by_rxn.setdefault(s.rxn, []).append(tuple(s.numbers))
    assert len(by_rxn) == N // PER
    assert all(len(v) == PER and len(set(v)) == 1 for v in by_rxn.values())


def test_length_record_and_layout(synth, source, horm_sample_path):
    mod, out, _ = synth
    _, raws = source
    from horm.data.lmdb_util import acquire_env, release_env

    src_env = acquire_env(horm_sample_path)  # shared with any reader of it in this process
    with src_env.begin() as txn:
        assert txn.get(b"length") == pickle.dumps(100, protocol=4)
    release_env(horm_sample_path)
    env = acquire_env(out)
    try:
        with env.begin() as txn:
            # the published writer's bytes: pickle protocol 4 (b"\x80\x04Kd." for 100 in the shared file)
            assert safe_loads(txn.get(b"length")) == N and txn.get(b"length") == pickle.dumps(N, protocol=4)
            assert env.stat()["entries"] == N + 1
            raw = txn.get(b"7")
    finally:
        release_env(out)
    j = _source_of(7, len(raws))
    src_raw, src_rec = raws[j], source[0][j]
    assert len(raw) == len(src_raw)
    slots = mod.find_slots(src_raw, src_rec, "src", str(j))
    patched = np.zeros(len(raw), dtype=bool)
    for k in mod.PATCHED:
        off, dt, count = slots[k]
        patched[off:off + count * dt.itemsize] = True
    diff = np.frombuffer(raw, np.uint8) != np.frombuffer(src_raw, np.uint8)
    assert diff.any() and not (diff & ~patched).any()  # byte-identical apart from the patched numbers


def test_plain_pickle_agrees_with_safe_reader(synth):
    torch = pytest.importorskip("torch")
    from _horm_pickle import ground_truth_mapping, stub_pyg

    _, out, _ = synth
    with HormLmdb(out) as ds:
        for i in (0, 1, 151, N - 1):
            safe = ds.record(i)
            with stub_pyg():
                truth = ground_truth_mapping(ds.raw(i))
            assert list(truth) == list(safe)
            for k, t in truth.items():
                assert isinstance(t, torch.Tensor)
                assert t.numpy().dtype == safe[k].dtype and t.numpy().shape == safe[k].shape, k
                assert np.array_equal(t.numpy(), safe[k]), k


def _run_main(mod, capsys, *args) -> tuple[int, list[str]]:
    rc = mod.main([*map(str, args), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


def test_refuses_existing_output_in_one_line(horm_sample_path, tmp_path, capsys):
    mod = _script()
    out = tmp_path / "x.lmdb"
    out.write_bytes(b"keep")
    rc, err = _run_main(mod, capsys, 5, out, "--source", horm_sample_path)
    assert rc == 1 and len(err) == 1 and "x.lmdb" in err[0] and "exists" in err[0] and "--overwrite" in err[0]
    assert out.read_bytes() == b"keep" and sorted(p.name for p in tmp_path.iterdir()) == ["x.lmdb"]
    rc, _ = _run_main(mod, capsys, 5, out, "--source", horm_sample_path, "--overwrite")
    assert rc == 0
    with HormLmdb(out) as ds:
        assert len(ds) == 5


def test_refuses_short_disk_in_one_line(horm_sample_path, tmp_path, capsys, monkeypatch):
    import horm.safe_io

    mod = _script()
    monkeypatch.setattr(horm.safe_io, "free_bytes", lambda path: 10_000)
    rc, err = _run_main(mod, capsys, 1000, tmp_path / "y.lmdb", "--source", horm_sample_path)
    assert rc == 1 and len(err) == 1 and "no space left on device" in err[0] and "10000 are free" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_interrupted_run_leaves_nothing(horm_sample_path, tmp_path, monkeypatch):
    mod = _script()
    calls = []
    real = mod.perturb

    def failing(*a):
        calls.append(1)
        if len(calls) > 60:
            raise KeyboardInterrupt
        return real(*a)

    monkeypatch.setattr(mod, "perturb", failing)
    with pytest.raises(KeyboardInterrupt):
        mod.make_synthetic(2000, tmp_path / "z.lmdb", horm_sample_path, show_progress=False)
    assert list(tmp_path.iterdir()) == []
