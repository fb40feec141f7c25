"""Reading the published HORM LMDB format safely."""

from __future__ import annotations

import pickle
import shutil

import lmdb
import numpy as np
import pytest

from horm.data.horm_lmdb import HormLmdb, safe_loads
from horm.errors import DataError, UnsafePickleError


def test_sample_file_facts(horm_samples):
    assert len(horm_samples) == 100
    nat = [s.natoms for s in horm_samples]
    assert (min(nat), max(nat)) == (8, 21)
    assert sorted({int(z) for s in horm_samples for z in s.numbers}) == [1, 6, 7, 8]
    s = horm_samples[0]
    assert s.hessian.shape == (3 * s.natoms, 3 * s.natoms) and s.hessian.dtype == np.float32
    assert s.pos.dtype == np.float32 and s.forces.shape == (s.natoms, 3)
    # published Hessians are symmetric to ~1e-4 eV/Å² (DFT), energies are total energies in eV
    assert np.abs(s.hessian - s.hessian.T).mean() < 1e-3
    assert -20000 < s.energy < -100
    # 'ae' = energy - Σ references: a few eV, not thousands
    assert abs(float(s.extras["ae"])) < 100


def test_directory_of_files_and_random_access(tmp_path, horm_sample_path):
    for k in range(2):
        shutil.copy(horm_sample_path, tmp_path / f"part{k}.lmdb")
    ds = HormLmdb(tmp_path)
    assert len(ds) == 200
    a, b = ds[5], ds[105]
    assert np.array_equal(a.hessian, b.hessian) and a.key != b.key
    assert np.array_equal(ds[-1].pos, ds[199].pos)
    with pytest.raises(IndexError):
        ds[200]


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.path}",))


def _write_lmdb(path, records: dict[bytes, bytes]):
    env = lmdb.open(str(path), subdir=False, map_size=1 << 24)
    with env.begin(write=True) as txn:
        for k, v in records.items():
            txn.put(k, v)
    env.close()


def test_pickle_carrying_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.lmdb"
    _write_lmdb(bad, {b"length": pickle.dumps(1), b"0": pickle.dumps(_Evil(marker))})
    # sanity: plain pickle.loads WOULD run the command
    pickle.loads(pickle.dumps(_Evil(tmp_path / "control")))
    assert (tmp_path / "control").exists()
    ds = HormLmdb(bad)
    with pytest.raises(UnsafePickleError) as exc:
        ds[0]
    msg = str(exc.value)
    assert "evil.lmdb" in msg and "key 0" in msg and "system" in msg and "\n" not in msg
    assert not marker.exists()


def test_unknown_global_inside_tensor_storage_is_refused(horm_sample_path, tmp_path):
    with HormLmdb(horm_sample_path) as ds:
        raw = ds.raw(0)
    tampered = raw.replace(b"ctorch\nFloatStorage\n", b"cposix\nsystem\n\x00\x00\x00\x00\x00\x00", 1)
    assert tampered != raw
    with pytest.raises(DataError):
        safe_loads(tampered, "x.lmdb", "0")


def test_truncated_lmdb_gives_one_line_error(horm_sample_path, tmp_path):
    data = horm_sample_path.read_bytes()
    bad = tmp_path / "truncated.lmdb"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError) as exc:
        ds = HormLmdb(bad)
        for _ in ds:
            pass
    assert "truncated.lmdb" in str(exc.value) and "\n" not in str(exc.value)


def test_missing_optional_fields_are_tolerated(tmp_path, horm_sample_path):
    """A record without forces/hessian/ae (e.g. a partial file) still reads."""
    with HormLmdb(horm_sample_path) as ds:
        raw = ds.raw(3)
    rec = safe_loads(raw, "x", "3")
    assert {"pos", "charges", "hessian"} <= set(rec)
