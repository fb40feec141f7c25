"""Locks and outputs under attack and faults (issue 28, "Locks and outputs", "Concurrency and faults").

* a planted symlink (or hard link, or foreign file) under a lock's name is refused and left
  untouched, for `horm label`, `horm ts benchmark` and LMDB's own lock file;
* `horm train` takes the output lock: a second run into one --out is refused naming the PID;
* resume=true picks the readable checkpoint of the highest step, skipping a truncated one aloud;
* a full disk is one line, the store is as it was before the write (or removed when this run
  created it and got nothing), and a checkpoint is written whole or not at all;
* a map failure (ulimit -v) is reported as what it is, or handled, never "not a horm store".
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from horm.data.sample import Sample
from horm.errors import DataError, HormError, TrainingError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
HORM_SAMPLE = SHARED / "data" / "horm_sample_100.lmdb"
VICTIM = b"precious data\n"


def _cli(args):
    from typer.testing import CliRunner

    from horm.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _victim(tmp_path) -> Path:
    v = tmp_path / "victim.txt"
    v.write_bytes(VICTIM)
    return v


def _h2(tmp_path) -> Path:
    p = tmp_path / "h2.xyz"
    p.write_text("2\nc\nH 0 0 0\nH 0 0 0.74\n")
    return p


def _samples(n: int, start: int = 0) -> list[Sample]:
    out = []
    for i in range(start, start + n):
        pos = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.74 + 0.001 * i]])
        out.append(Sample(numbers=np.array([1, 1]), pos=pos, energy=-1.0 - i, forces=np.zeros((2, 3)),
                          hessian=np.eye(6), key=f"s{i}"))
    return out


class ToyEngine:
    name, level_of_theory, settings = "toy", "toy level", {}

    def compute(self, sample, want=("energy", "forces", "hessian")):
        n = sample.natoms
        return sample.copy(energy=-1.0, forces=np.zeros((n, 3)), hessian=np.eye(3 * n))


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "256k"):
    """A tiny real file system to fill up; skips when mounting is not permitted."""
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.decode().strip()[:80]})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(fs: Path, leave: int) -> None:
    """Fill ``fs`` until about ``leave`` bytes stay free."""
    free = os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize
    (fs / "fill").write_bytes(b"\0" * max(free - leave, 0))


# --- planted lock files --------------------------------------------------------------------------

@pytest.mark.parametrize("plant", ["symlink", "hardlink", "foreign"])
def test_a_planted_lock_file_is_refused_and_left_untouched(tmp_path, plant):
    from horm.jobs import output_lock

    victim = _victim(tmp_path)
    out = tmp_path / "o" / "out.hstore"
    out.parent.mkdir()
    lock = out.with_name("out.hstore.lock")
    if plant == "symlink":
        lock.symlink_to("../victim.txt")
    elif plant == "hardlink":
        os.link(victim, lock)
    else:
        lock.write_bytes(VICTIM)
    with pytest.raises(DataError) as ei:
        with output_lock(out):
            pass
    assert str(lock) in str(ei.value)
    assert victim.read_bytes() == VICTIM and lock.read_bytes() == VICTIM


def test_horm_label_with_a_planted_lock_symlink_leaves_the_victim(tmp_path):
    victim = _victim(tmp_path)
    out = tmp_path / "o" / "out.hstore"
    out.parent.mkdir()
    out.with_name("out.hstore.lock").symlink_to("../victim.txt")
    res = _cli(["label", _h2(tmp_path), "--engine", "xtb", "--out", out])
    assert res.exit_code == 1, res.output
    assert "symlink" in res.output and "Traceback" not in res.output
    assert victim.read_bytes() == VICTIM and not out.exists()


def test_ts_benchmark_with_a_planted_lock_symlink_leaves_the_victim(tmp_path):
    from horm.ts.benchmark import run_benchmark

    victim = _victim(tmp_path)
    (tmp_path / "run.lock").symlink_to("victim.txt")
    rxn = _h2(tmp_path)
    with pytest.raises(DataError, match="symlink"):
        run_benchmark([rxn], "xtb", tmp_path / "run")
    assert victim.read_bytes() == VICTIM


def test_lmdb_own_lock_file_symlink_is_refused(tmp_path):
    from horm.data.store import HessianStore

    victim = _victim(tmp_path)
    out = tmp_path / "s.hstore"
    Path(str(out) + "-lock").symlink_to("victim.txt")
    with pytest.raises(DataError, match="LMDB's lock file is a symlink"):
        HessianStore.create(out, "toy")
    assert victim.read_bytes() == VICTIM and not out.exists()


def test_a_stale_lock_is_reused_and_a_live_one_names_its_pid(tmp_path):
    from horm.jobs import OutputLocked, output_lock

    out = tmp_path / "s.hstore"
    lock = tmp_path / "s.hstore.lock"
    lock.write_text("999999\n")  # stale: its holder is gone
    with output_lock(out):
        assert lock.read_text() == f"{os.getpid()}\n"
    assert lock.exists()  # never deleted
    holder = _hold_lock(out)
    try:
        with pytest.raises(OutputLocked, match=f"PID {holder.pid}"):
            with output_lock(out):
                pass
    finally:
        holder.kill()
        holder.wait()


def _hold_lock(out: Path) -> subprocess.Popen:
    code = ("import sys, time; from horm.jobs.lock import output_lock\n"
            "with output_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline().strip() == b"held"
    return proc


# --- horm train ----------------------------------------------------------------------------------

def test_a_second_horm_train_into_one_out_is_refused(tmp_path):
    if not HORM_SAMPLE.exists():
        pytest.skip(f"shared HORM sample not found at {HORM_SAMPLE}")
    out = tmp_path / "run"
    holder = _hold_lock(out)
    try:
        t0 = time.perf_counter()
        res = _cli(["train", "--data", HORM_SAMPLE, "--out", out, "trainer.max_steps=1"])
        assert time.perf_counter() - t0 < 5
    finally:
        holder.kill()
        holder.wait()
    assert res.exit_code == 1, res.output
    assert f"PID {holder.pid}" in res.output and "Traceback" not in res.output
    assert not (out / "checkpoints").exists()


def _ckpt(path: Path, step: int) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.zeros(4)}, "loops": {}, "global_step": step}, path)
    return path


def test_resume_picks_the_newest_readable_checkpoint(tmp_path):
    from horm.train.run import find_resume_checkpoint

    d = tmp_path / "checkpoints"
    _ckpt(d / "last.ckpt", 5)  # a SIGKILL just after step000010.ckpt: last.ckpt is behind
    step10 = _ckpt(d / "step000010.ckpt", 10)
    assert find_resume_checkpoint(tmp_path) == step10
    _ckpt(d / "last.ckpt", 10)  # a tie: last.ckpt
    assert find_resume_checkpoint(tmp_path) == d / "last.ckpt"


def test_resume_skips_a_truncated_newest_checkpoint_aloud(tmp_path):
    from horm.train.run import find_resume_checkpoint

    d = tmp_path / "checkpoints"
    last = _ckpt(d / "last.ckpt", 5)
    step10 = _ckpt(d / "step000010.ckpt", 10)
    step10.write_bytes(step10.read_bytes()[:100])
    told = []
    assert find_resume_checkpoint(tmp_path, on_skip=told.append) == last
    assert told == [step10]


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
    from horm.data.integrity import verify_store
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
    from horm.data.integrity import verify_store
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

    def full(cfg, console=None):
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


def test_an_unhandled_hormerror_is_never_raised_for_a_full_lock_disk(tmp_path):
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
