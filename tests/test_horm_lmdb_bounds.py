"""The HORM reader against ground truth and against crafted tensor geometry.

Checked against main before the fix (c1d7efa): the crafted-geometry tests failed there
(exit 0 with memory copied out of the process, SIGSEGV for a 10^12 stride, ~1.4 GB peak
RSS for the zero-stride bomb, a negative size read as an empty array).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings

import lmdb
import numpy as np
import pytest

from horm.data.horm_lmdb import HormLmdb

from _horm_pickle import CraftedTensor, dumps_record, ground_truth_mapping, stub_pyg

torch = pytest.importorskip("torch")


def test_reader_matches_plain_pickle_on_every_array(horm_sample_path):
    """Every field of every record: the allow-list reader == real pickle + torch."""
    warnings.filterwarnings("ignore", category=UserWarning)  # TypedStorage deprecation
    n_fields = 0
    with HormLmdb(horm_sample_path) as ds, stub_pyg():
        assert len(ds) == 100
        for i in range(len(ds)):
            truth = ground_truth_mapping(ds.raw(i))
            ours = ds.record(i)
            assert set(ours) == set(truth)
            for k, t in truth.items():
                if not isinstance(t, torch.Tensor):
                    assert ours[k] == t
                    continue
                a = ours[k]
                assert isinstance(a, np.ndarray) and a.shape == tuple(t.shape), (i, k)
                assert a.dtype == np.dtype(str(t.numpy().dtype)), (i, k)
                assert np.array_equal(a, t.numpy()), (i, k)
                n_fields += 1
    assert n_fields >= 100 * 5


def _write(path, records):
    env = lmdb.open(str(path), subdir=False, map_size=1 << 24)
    with env.begin(write=True) as txn:
        for k, v in records.items():
            txn.put(k, v)
    env.close()


# field, storage elements, offset, size, stride
CASES = {
    "out_of_bounds_stride": ("pos", None, 0, None, (30, 1)),     # reads past the storage
    "huge_stride": ("pos", None, 0, None, (10**12, 1)),          # SIGSEGV before
    "negative_stride": ("pos", None, 42, None, (-3, 1)),
    "zero_stride_bomb": ("forces", None, 0, "bomb", (3, 1, 0)),  # 45 floats -> 1.4 GB
    "negative_size": ("ae", 1, 0, (-1,), (1,)),                  # silently empty before
}


def _crafted_file(tmp_path, horm_sample_path, case):
    field, nstore, offset, size, stride = CASES[case]
    with HormLmdb(horm_sample_path) as ds, stub_pyg(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mapping = ground_truth_mapping(ds.raw(0))
        t = mapping[field]
        storage = t.reshape(-1)[: nstore or t.numel()]
        if size is None:
            size = tuple(t.shape)
        elif size == "bomb":
            size = (*t.shape, 8_000_000)
        mapping[field] = CraftedTensor(storage, offset, size, stride)
        raw = dumps_record(mapping)
    path = tmp_path / f"{case}.lmdb"
    _write(path, {b"length": pickle.dumps(1), b"0": raw})
    assert path.stat().st_size < 64 * 1024
    return path, field


_CHILD = """
import sys
from horm.cli import app
try:
    app(sys.argv[1:])
except SystemExit:
    # VmHWM: this process's own peak RSS (ru_maxrss would include pytest's, kept across exec)
    print([ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0])
    raise
"""


@pytest.mark.parametrize("case", list(CASES))
def test_crafted_tensor_geometry_is_one_line_error(tmp_path, horm_sample_path, case):
    """Exit > 0 (not a signal), one line naming file, key and field, peak RSS < 300 MB."""
    path, field = _crafted_file(tmp_path, horm_sample_path, case)
    r = subprocess.run([sys.executable, "-c", _CHILD, "data", "info", str(path)], capture_output=True, text=True)
    assert r.returncode > 0, f"exit {r.returncode} (negative = killed by a signal)\n{r.stderr}"
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert path.name in r.stderr and "key 0" in r.stderr and f"field {field}" in r.stderr
    if not os.path.exists("/proc/self/status"):
        return  # no VmHWM to measure on this OS
    peak_mb = int(r.stdout.split()[-1]) / 1024
    print(f"{case}: exit {r.returncode}, peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 300


@pytest.mark.parametrize("length", [10**100, 5, -1])
def test_length_record_beyond_the_file_is_refused(tmp_path, horm_sample_path, length):
    """A length record larger than the records the file holds (main: OverflowError, or
    'missing record' only when that index is read)."""
    from horm.errors import DataError

    with HormLmdb(horm_sample_path) as ds:
        raw = ds.raw(0)
    path = tmp_path / "len.lmdb"
    _write(path, {b"length": pickle.dumps(length), b"0": raw})
    with pytest.raises(DataError, match="len.lmdb: key length: bad length record"):
        HormLmdb(path)
