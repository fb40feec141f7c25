"""Store integrity: checksums catch damage on read, `horm data verify` finds it, old stores read.

Checked against main (c1d7efa) before the change: the flipped position read back changed
with no error, a flipped chunk count gave 68 of 100 samples with exit 0, garbage __meta__
gave an empty "error: " line, and `data verify` did not exist.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from horm.cli import app
from horm.data.verify import verify_store
from horm.data.store import HessianStore
from horm.errors import DataError

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _water(key: str, shift: float = 0.0):
    from horm.data.sample import Sample

    pos = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]]) + [shift, 0.0, 0.0]
    return Sample(numbers=np.array([8, 1, 1]), pos=pos, energy=-2000.0 + shift,
                  forces=np.zeros((3, 3)), hessian=np.eye(9, dtype=np.float32), key=key)


def _store(path: Path, n: int = 10, checksums: bool = True) -> Path:
    st = HessianStore.create(path, "test", chunk_size=4, checksums=checksums)
    st.extend([_water(f"w{i}", 0.01 * i) for i in range(n)])
    st.close()
    return path


def _flip_in_value(path: Path, needle: bytes, bit: int = 0) -> None:
    """Flip one bit in every copy of ``needle`` (LMDB may keep a stale copy in a free page)."""
    data = bytearray(path.read_bytes())
    at = data.find(needle)
    assert at > 0
    while at >= 0:
        data[at] ^= 1 << bit
        at = data.find(needle, at + 1)
    path.write_bytes(bytes(data))


def test_flipped_position_bit_is_an_error_naming_store_chunk_and_keys(tmp_path):
    p = _store(tmp_path / "a.hstore")
    # sample w5 (chunk 1) has a unique x coordinate; flip a mantissa bit of it
    _flip_in_value(p, np.float64(0.96 + 0.05).tobytes())
    with HessianStore.open(p) as st:
        assert st[0].key == "w0" and st[9].key == "w9"  # other chunks still read
        with pytest.raises(DataError) as exc:
            st[5]
    msg = str(exc.value)
    assert "a.hstore" in msg and "chunk 1" in msg and "w4" in msg and "w7" in msg and "checksum" in msg
    rep = verify_store(p)
    assert rep.protected and len(rep.damaged) == 1 and "chunk 1" in rep.damaged[0]


def test_flipped_chunk_count_is_caught_even_without_checksums(tmp_path):
    """Old layout: the chunk's count no longer matches the metadata -> error, not fewer samples."""
    p = _store(tmp_path / "old.hstore", checksums=False)
    from horm.data.store_codec import encode_sample

    # chunk 0 starts with <u4 count = 4>, <u4 offset 0>, <u4 end of sample w0>; 4 -> 0
    _flip_in_value(p, np.array([4, 0, len(encode_sample(_water("w0")))], dtype="<u4").tobytes(), bit=2)
    with HessianStore.open(p) as st, pytest.raises(DataError, match="old.hstore: chunk 0: corrupt chunk .*keys w0, w1, w2, w3"):
        list(st)


def test_verify_cli_reports_damage_unprotected_and_ok(tmp_path):
    good = _store(tmp_path / "good.hstore")
    r = runner.invoke(app, ["data", "verify", str(good)])
    assert r.exit_code == 0 and r.output.strip().endswith("ok"), r.output
    bad = tmp_path / "bad.hstore"
    shutil.copy(good, bad)
    _flip_in_value(bad, np.float64(0.96 + 0.09).tobytes(), bit=3)  # w9, chunk 2
    r = runner.invoke(app, ["data", "verify", str(bad)])
    assert r.exit_code == 1 and "chunk 2" in r.output and "w9" in r.output and "1 damaged" in r.output
    old = _store(tmp_path / "old.hstore", checksums=False)
    r = runner.invoke(app, ["data", "verify", str(old)])
    assert r.exit_code == 0 and "unprotected" in r.output
    with HessianStore.open(old) as st:  # old stores still read
        assert not st.sealed and [s.key for s in st] == [f"w{i}" for i in range(10)]


def test_appending_to_a_damaged_partial_chunk_does_not_launder_it(tmp_path):
    p = _store(tmp_path / "a.hstore")  # 10 samples: chunk 2 holds w8, w9
    _flip_in_value(p, np.float64(0.96 + 0.08).tobytes())
    with HessianStore.open(p, readonly=False) as st, pytest.raises(DataError, match="chunk 2"):
        st.append(_water("w10", 0.1))
    assert not verify_store(p).ok


def test_garbage_meta_and_lmdb_errors_are_one_line(tmp_path):
    p = _store(tmp_path / "a.hstore")
    _flip_in_value(p, b"level_of_theory")
    r = subprocess.run([sys.executable, "-m", "horm.cli", "data", "info", str(p)], capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    assert re.fullmatch(r"error: \S*a\.hstore: __meta__: checksum mismatch.*\n", r.stderr), r.stderr
    # trash each B-tree page header in turn: LMDB's own errors come out as one line naming the store
    clean = _store(tmp_path / "b.hstore")
    data = clean.read_bytes()
    for page in range(2, min(len(data) // 4096, 8)):
        d = bytearray(data)
        d[page * 4096: page * 4096 + 16] = b"\xff" * 16
        c = tmp_path / f"p{page}.hstore"
        c.write_bytes(bytes(d))
        r = subprocess.run([sys.executable, "-m", "horm.cli", "data", "info", str(c)], capture_output=True, text=True)
        assert r.returncode in (0, 1), (page, r.returncode, r.stderr)
        if r.returncode:
            assert len(r.stderr.strip().splitlines()) == 1 and c.name in r.stderr, r.stderr


def test_thirty_random_bit_flips_no_silent_change(tmp_path, horm_sample_path):
    """The Done-means experiment, small: every read is original or a DataError; verify finds each."""
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "store_bitflip.py"), str(horm_sample_path),
                        "--flips", "30", "--no-baseline"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    row = r.stdout.strip().splitlines()[-1].split()
    unchanged, detected, verify_only, silent, missed, crash = map(int, row[-6:])
    assert silent == missed == crash == 0, r.stdout
    assert detected >= 20 and unchanged + detected + verify_only == 30


def test_reader_open_during_an_append_keeps_its_snapshot_not_a_damage_error(tmp_path):
    """`horm data info` on a store that `horm label` is still writing: the partial last chunk grows
    under the reader, which must read the samples it opened with, not call the store damaged."""
    path = _store(tmp_path / "s.hstore", n=5)  # chunk_size 4: chunk 1 holds 1 sample
    reader = HessianStore.open(path)
    code = ("import sys; sys.path.insert(0, %r); from test_store_integrity import _water; "
            "from horm.data.store import HessianStore; st = HessianStore.open(%r, readonly=False); "
            "st.extend([_water('w5', 0.05), _water('w6', 0.06)]); st.close()") % (str(Path(__file__).parent), str(path))
    subprocess.run([sys.executable, "-c", code], check=True)
    assert len(reader) == 5
    assert [s.key for s in reader] == [f"w{i}" for i in range(5)]
    assert reader[4].key == "w4"
    reader.close()
    assert len(HessianStore.open(path)) == 7
