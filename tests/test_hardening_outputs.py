"""Locks and outputs under attack (issue 28, "Locks and outputs", "Concurrency and faults").

* a planted symlink (or hard link, or foreign file) under a lock's name is refused and left
  untouched, for `horm label`, `horm ts benchmark` and LMDB's own lock file;
* `horm train` takes the output lock: a second run into one --out is refused naming the PID;
* resume=true picks the readable checkpoint of the highest step, skipping a truncated one aloud.

Full disks and map failures: tests/test_hardening_disk.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from horm.errors import DataError

from _hardening import HORM_SAMPLE, VICTIM, _cli, _h2, _victim


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


