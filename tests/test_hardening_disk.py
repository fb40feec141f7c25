"""Full disks and refused maps (issue 28, "Concurrency and faults": disk full, ulimit -v).

* a full disk is one line, the store is as it was before the write (or removed when this run
  created it and got nothing), and a checkpoint is written whole or not at all;
* a map failure (ulimit -v) is reported as what it is, or handled, never "not a horm store".

A small real tmpfs is filled where mounting is permitted (the test skips with the reason
otherwise); a racing writer is simulated at the boundary (the free-space check patched out).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from horm.errors import DataError, HormError, TrainingError
from _hardening import HORM_SAMPLE, ToyEngine, _cli, _fill, _h2, _samples, small_tmpfs


# --- full disks ----------------------------------------------------------------------------------

def test_convert_onto_a_full_disk_leaves_no_empty_store(tmp_path):
    from horm.data.convert import convert

    src = tmp_path / "src.extxyz"
    from horm.data.formats import export_samples

    export_samples(_samples(60), src)
    with small_tmpfs(tmp_path / "fs") as fs:
        _fill(fs, 40_000)
        dst = fs / "out.hstore"
        with pytest.raises(DataError, match="no space left on device"):
            convert(src, dst, show_progress=False)
        assert not dst.exists() and not Path(str(dst) + "-lock").exists()
        res = _cli(["data", "convert", src, dst])
        assert res.exit_code == 1 and "no space left on device" in res.output, res.output
        assert not dst.exists()


def test_a_commit_that_hits_enospc_rolls_back(tmp_path, monkeypatch):
    """The free-space check passes (a racing writer fills the disk): LMDB's commit fails, and the
    store keeps every earlier batch and nothing of this one."""
    import horm.data.store as store_mod
    from horm.data.verify import verify_store
    from horm.data.store import HessianStore

    with small_tmpfs(tmp_path / "fs") as fs:
        store = HessianStore.create(fs / "s.hstore", "toy")
        store.extend(_samples(3))
        monkeypatch.setattr(store_mod, "check_free_space", lambda *a, **k: None)
        _fill(fs, 8_000)
        with pytest.raises(DataError, match="no space left on device.*rolled back"):
            store.extend(_samples(40, start=3))
        assert len(store) == 3
        store.close()
        (fs / "fill").unlink()
        with HessianStore.open(fs / "s.hstore") as s:
            assert len(s) == 3 and s.keys() == {"s0", "s1", "s2"}
        assert verify_store(fs / "s.hstore").ok


def test_label_onto_a_full_disk_is_one_line_and_leaves_no_empty_store(tmp_path, monkeypatch):
    import horm.data.store as store_mod
    from horm.data.verify import verify_store
    from horm.data.store import HessianStore
    from horm.data.xyz import write_xyz
    from horm.label.runner import label

    src = tmp_path / "in.xyz"
    write_xyz(src, _samples(40))
    with small_tmpfs(tmp_path / "fs") as fs:
        _fill(fs, 30_000)
        out = fs / "l.hstore"
        with pytest.raises(DataError, match="no space left on device"):
            label(src, ToyEngine(), out, show_progress=False, print_summary=False)
        if out.exists():  # what was committed before the disk filled up stays, and is whole
            assert verify_store(out).ok
            with HessianStore.open(out) as s:
                assert len(s) >= 1
    out = tmp_path / "l2.hstore"  # the first append already fails: the new store is removed

    def full(path, needed, what="this write"):
        raise DataError(str(path), f"no space left on device: {what} needs about {needed} bytes, 0 are free")

    monkeypatch.setattr(store_mod, "check_free_space", full)
    with pytest.raises(DataError, match="no space left on device"):
        label(src, ToyEngine(), out, show_progress=False, print_summary=False)
    assert not out.exists() and not Path(str(out) + "-lock").exists()


def test_a_checkpoint_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    import torch

    import horm.safe_io
    from horm.train.run import AtomicCheckpointIO

    with small_tmpfs(tmp_path / "fs", "512k") as fs:
        path = fs / "checkpoints" / "last.ckpt"
        io = AtomicCheckpointIO()
        io.save_checkpoint({"w": torch.zeros(10)}, path)
        before = path.read_bytes()
        big = {"w": torch.zeros(200_000)}  # 800 kB: more than the disk holds
        with pytest.raises(DataError, match="no space left on device"):
            io.save_checkpoint(big, path)
        monkeypatch.setattr(horm.safe_io, "check_free_space", lambda *a, **k: None)
        with pytest.raises(DataError, match="no space left on device.*intact"):
            io.save_checkpoint(big, path)  # the write itself fails
        assert path.read_bytes() == before
        assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temporary left


def test_enospc_during_training_is_one_training_error_line(tmp_path, monkeypatch):
    import horm.train.run as run
    from horm.train.config import TrainConfig

    if not HORM_SAMPLE.exists():
        pytest.skip(f"shared HORM sample not found at {HORM_SAMPLE}")

    def full(*args, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "logs" / "metrics.csv"))

    monkeypatch.setattr(run, "_train", full)
    cfg = TrainConfig.from_yaml(None, [f"data.train={HORM_SAMPLE}", f"out={tmp_path / 'run'}"])
    with pytest.raises(TrainingError, match="no space left on device.*metrics.csv") as ei:
        run.train(cfg)
    assert "\n" not in str(ei.value)


# --- address space (ulimit -v) -------------------------------------------------------------------

def _store(tmp_path) -> Path:
    from horm.data.store import HessianStore

    with HessianStore.create(tmp_path / "ok.hstore", "toy") as s:
        s.extend(_samples(3))
    return tmp_path / "ok.hstore"


def test_a_refused_1tib_map_is_retried_smaller(tmp_path, monkeypatch):
    import lmdb

    import horm.data.lmdb_util as lu
    from horm.data.io import open_dataset
    from horm.data.store import HessianStore

    p = _store(tmp_path)
    real = lmdb.open

    def limited(path, map_size=10485760, **kw):
        if map_size > 1 << 31:
            raise lmdb.MemoryError(f"{path}: Cannot allocate memory")
        return real(path, map_size=map_size, **kw)

    monkeypatch.setattr(lu.lmdb, "open", limited)
    ds = open_dataset(p)
    assert len(ds) == 3
    ds.close()
    with HessianStore.open(p, readonly=False) as s:  # writable: a smaller map too
        s.extend(_samples(2, start=3))
        assert len(s) == 5


def test_an_unmappable_store_is_not_called_not_a_store(tmp_path, monkeypatch):
    import lmdb

    import horm.data.lmdb_util as lu

    p = _store(tmp_path)

    def refuse(path, **kw):
        raise lmdb.MemoryError(f"{path}: Cannot allocate memory")

    monkeypatch.setattr(lu.lmdb, "open", refuse)
    res = _cli(["data", "info", p])
    assert res.exit_code == 1, res.output
    assert "cannot map" in res.output and "not a horm store" not in res.output


def test_a_store_reads_under_ulimit_v(tmp_path):
    """The real thing: a process limited to ~5.7 GiB of address space (ulimit -v 6000000)."""
    import resource

    p = _store(tmp_path)
    code = "import sys; from horm.data.store import is_store, HessianStore; print(is_store(sys.argv[1]), len(HessianStore.open(sys.argv[1])))"

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (6_000_000 * 1024, 6_000_000 * 1024))

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(x for x in sys.path if x))
    res = subprocess.run([sys.executable, "-c", code, str(p)], preexec_fn=limit, capture_output=True, text=True,
                         env=env, timeout=60)
    assert res.returncode == 0 and res.stdout.split() == ["True", "3"], res.stderr[-500:]


def test_a_full_disk_while_writing_the_lock_pid_is_one_line(tmp_path):
    """Neighbour: a disk so full that the lock file's PID cannot be written is one line too."""
    from horm.jobs import output_lock

    with small_tmpfs(tmp_path / "fs", "64k") as fs:
        _fill(fs, 0)
        with pytest.raises(HormError, match="lock file"):
            with output_lock(fs / "x.hstore"):
                pass


def test_any_full_disk_write_in_a_verb_is_one_line(tmp_path):
    """Neighbour: a write whose size is not known upfront (``data export`` through ASE) still ends
    in one line, and leaves no temporary file."""
    from horm.data.convert import convert

    store = convert(_h2(tmp_path).parent / "h2.xyz", tmp_path / "s.hstore", show_progress=False)
    store.extend(_samples(200, start=10))
    store.close()
    with small_tmpfs(tmp_path / "fs", "64k") as fs:
        res = _cli(["data", "export", tmp_path / "s.hstore", fs / "out.extxyz"])
        assert res.exit_code == 1, res.output
        assert "no space left on device" in res.output and "Traceback" not in res.output
        assert list(fs.iterdir()) == []
