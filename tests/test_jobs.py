"""horm.jobs: one runner for labelling, sampling and TS benchmarks.

Stated: a task over its timeout or a crashing worker fails alone and its worker is
replaced; workers die with their parent even when it is SIGKILLed mid-task, and a rerun
then finishes the set with nothing lost and nothing duplicated; a second runner on the same
output is refused at once, naming the holder; Ray gives the same TS outcomes as local
processes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from horm.jobs import Job, JobOptions, OutputLocked, output_lock, run_jobs

psutil = pytest.importorskip("psutil")

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REACTIONS = SHARED / "data" / "t1x_val_reactions"
FAST = {"path": {"method": "none", "n_images": 5}, "tsopt": {"max_steps": 5},
        "irc": {"max_steps": 10, "opt_max_steps": 30}}


# --- toy tasks (module level: worker processes import them from here) ---

def _pid() -> int:
    return os.getpid()


def _toy(loaded_pid: int, payload):
    if payload == "crash":
        os._exit(3)
    if payload == "raise":
        raise RuntimeError("boom")
    time.sleep(payload)
    return loaded_pid, os.getpid()


class _ListSink:
    def __init__(self, skip=()):
        self.outs, self.skip = [], set(skip)

    def skip_reason(self, key):
        return "done" if key in self.skip else None

    def put(self, outs):
        self.outs += outs


@pytest.mark.parametrize("backend", ["serial", "process"])
def test_timeout_and_crash_fail_alone_and_workers_are_replaced(backend):
    items = [("a", 0.05), ("slow", 30), ("bad", "raise"), ("b", 0.05), ("c", 0.05), ("a", 0.05), ("old", 0.05)]
    if backend == "process":
        items.insert(1, ("dies", "crash"))
    sink = _ListSink(skip={"old"})
    t0 = time.time()
    stats = run_jobs(items, Job(_pid, _toy), sink, JobOptions(workers=2 if backend == "process" else 1, timeout=1.0,
                                                              progress=False), total=len(items))
    assert time.time() - t0 < 15  # the 30 s task was cut at 1 s
    by = {o.key: o for o in sink.outs}
    assert len(sink.outs) == len(by)  # "a" (repeated in the input) ran once, "old" not at all
    assert set(by) == {k for k, _ in items} - {"old"}
    assert by["slow"].kind == "timeout" and by["bad"].kind == "error" and "boom" in by["bad"].message
    assert all(by[k].ok for k in "abc")
    assert stats.skipped == {"done": 1, "repeated in the input": 1} and stats.backend == backend
    loaded, ran = zip(*(by[k].value for k in "abc"))
    assert loaded == ran  # each worker loaded its object itself, once
    if backend == "process":
        assert by["dies"].kind == "crash" and "exit code 3" in by["dies"].message
        assert os.getpid() not in ran
    else:
        assert set(ran) == {os.getpid()}


def test_second_runner_on_the_same_output_is_refused(tmp_path):
    out = tmp_path / "x.hstore"
    code = (f"from horm.jobs import output_lock\nimport time\nwith output_lock({str(out)!r}):\n"
            f"    print('held', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.time()
        with pytest.raises(OutputLocked, match=f"PID {holder.pid}"):
            with output_lock(out):
                pass
        assert time.time() - t0 < 0.5
        with output_lock(tmp_path / "other.hstore"):  # another output is free
            pass
    finally:
        holder.kill()
        holder.wait()
    with output_lock(out):  # the kernel dropped the dead holder's lock
        with output_lock(out):  # re-entrant in one process
            pass


def _descendants(pid: int) -> list:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _alive(procs) -> list:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _kill_parent_and_check_workers(proc: subprocess.Popen, n_workers: int) -> None:
    """SIGKILL ``proc``; its worker processes must be gone within 5 s."""
    kids = _descendants(proc.pid)
    assert len(kids) >= n_workers, kids
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t_end = time.time() + 5.0
    while _alive(kids) and time.time() < t_end:
        time.sleep(0.1)
    left = _alive(kids)
    assert not left, f"workers outlived their parent: {[(p.pid, p.cmdline()[:3]) for p in left]}"


def _molecules(n: int, seed: int = 1):
    from ase.build import molecule

    from horm.data.sample import Sample

    rng = np.random.default_rng(seed)
    base = [molecule(m) for m in ("CH3CH2OH", "CH3CHO", "C2H6")]
    return [Sample(numbers=base[i % 3].numbers.astype(np.int64),
                   pos=base[i % 3].positions + rng.normal(0, 0.02, (len(base[i % 3]), 3))) for i in range(n)]


def _count(path: Path) -> int:
    from test_label_runner import _store_count

    return _store_count(path)


def test_label_parent_killed_mid_task_takes_its_workers_and_a_rerun_completes(tmp_path):
    from horm.data.store import HessianStore
    from horm.data.xyz import write_xyz

    src = write_xyz(tmp_path / "g.xyz", _molecules(24))
    out = tmp_path / "s.hstore"
    cmd = [sys.executable, "-m", "horm.cli", "label", str(src), "--engine", "xtb", "--out", str(out),
           "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t0 = time.time()
    while _count(out) < 4 and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.02)
    # a second label run on the same store while the first one holds it: refused at once.
    # (Its 2 workers are paused meanwhile: on a 2-core machine they would otherwise own the
    # CPUs and the 2 s would measure the scheduler, not the lock.)
    workers = _descendants(proc.pid)
    for w in workers:
        w.suspend()
    try:
        t1 = time.time()
        second = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=30)
        took = time.time() - t1
    finally:
        for w in workers:
            w.resume()
    lines = [x for x in (second.stdout + second.stderr).splitlines() if x.strip()]
    assert second.returncode == 1 and took < 2.0, (took, lines)
    assert len(lines) == 1 and f"PID {proc.pid}" in lines[0], lines
    _kill_parent_and_check_workers(proc, 2)
    before = _count(out)
    assert 4 <= before < 24, f"the kill came too late ({before} stored); the test needs a mid-run kill"
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"skipped {before} (already stored)" in done.stdout and f"labelled {24 - before}," in done.stdout
    with HessianStore.open(out) as st:
        keys = [x.key for x in st]
        assert len(keys) == len(set(keys)) == 24 and st.failures() == []


@pytest.mark.slow
def test_label_on_local_ray_parent_killed_takes_every_ray_process(tmp_path):
    """Ray's raylet, GCS, agents and actors all end within 5 s of a SIGKILLed driver."""
    pytest.importorskip("ray")
    from horm.data.xyz import write_xyz

    src = write_xyz(tmp_path / "g.xyz", _molecules(300))
    out = tmp_path / "r.hstore"
    cmd = [sys.executable, "-m", "horm.cli", "label", str(src), "--engine", "xtb", "--out", str(out),
           "--workers", "2", "--ray", "local", "--no-progress"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while _count(out) < 4 and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.05)
    names = {p.name() for p in _descendants(proc.pid)}
    assert {"raylet", "gcs_server"} <= names, names
    _kill_parent_and_check_workers(proc, 4)


def _lines(out: Path) -> list[dict]:
    p = out / "results.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.exists() else []


def _reaction_dir(tmp_path: Path, names) -> Path:
    if not REACTIONS.exists():
        pytest.skip(f"shared reaction set not found at {REACTIONS}")
    pytest.importorskip("sella")
    d = tmp_path / "rxns"
    d.mkdir()
    for name in names:
        shutil.copy(REACTIONS / f"{name}.xyz", d)
    return d


def _ts_cmd(rdir: Path, out: Path, settings: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "horm.cli", "ts", "benchmark", str(rdir), "--potential", "xtb", "--out", str(out),
            "--timeout", "300", "--settings", str(settings), *extra]


def test_ts_benchmark_parent_killed_mid_task_takes_its_workers_and_a_rerun_completes(tmp_path):
    import yaml

    names = ("rxn2587", "rxn1929", "rxn4440", "rxn2858")
    rdir = _reaction_dir(tmp_path, names)
    settings = tmp_path / "fast.yaml"
    settings.write_text(yaml.safe_dump(FAST))
    out = tmp_path / "run"
    cmd = _ts_cmd(rdir, out, settings, "--workers", "2")
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()  # mid-task: both workers have started a reaction (their log files exist)
    while len(list(out.glob("*/log.txt"))) < 2 and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.05)
    assert proc.poll() is None and len(_lines(out)) < len(names)
    _kill_parent_and_check_workers(proc, 2)
    first = {r["rxn"] for r in _lines(out)}
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = _lines(out)
    assert sorted(r["rxn"] for r in lines) == sorted(names)  # each reaction exactly once
    assert first <= {r["rxn"] for r in lines}
    assert all(r.get("status") == "done" for r in lines), [r.get("error") for r in lines]


@pytest.mark.slow
def test_ts_benchmark_on_local_ray_matches_local_processes(tmp_path):
    """3 reactions, xTB, 2 workers: Ray (2 CPUs) and local processes reach the same outcomes."""
    pytest.importorskip("ray")
    import yaml

    names = ("rxn2587", "rxn1929", "rxn4440")
    rdir = _reaction_dir(tmp_path, names)
    settings = tmp_path / "fast.yaml"
    settings.write_text(yaml.safe_dump(FAST))
    runs = {}
    for kind, extra in (("local", ()), ("ray", ("--ray", "local"))):
        out = tmp_path / kind
        res = subprocess.run(_ts_cmd(rdir, out, settings, "--workers", "2", *extra), env=ENV, capture_output=True,
                             text=True, timeout=400)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        runs[kind] = {r["rxn"]: r for r in _lines(out)}
    assert set(runs["ray"]) == set(runs["local"]) == set(names)
    for rxn in names:
        a, b = runs["local"][rxn], runs["ray"][rxn]
        fields = ["status", "path_success", "ts_success"]
        if a.get("irc_converged") and b.get("irc_converged"):
            # an unconverged IRC branch (rxn1929's forward one stops near a flat region) ends wherever
            # round-off leaves it, and its outcome flipped between runs: compare outcomes only when converged
            fields += ["outcome", "intended"]
        for field in fields:
            assert a.get(field) == b.get(field), (rxn, field, a.get(field), b.get(field))
        if a.get("barrier_kcal_mol") is not None:
            assert b["barrier_kcal_mol"] == pytest.approx(a["barrier_kcal_mol"], abs=0.05)


def test_sample_option_that_does_not_apply_to_the_method_is_an_error(tmp_path):
    from typer.testing import CliRunner

    from horm.cli import app
    from horm.sample.run import settings_for

    with pytest.raises(ValueError, match="fraction: not a setting of method 'irc'"):
        settings_for("irc", fraction=0.5)
    s = settings_for("neb", steps=7, fraction=0.5)
    assert (s.neb_steps, s.ci_steps, s.fraction) == (7, 7, 0.5)
    assert settings_for("irc", steps=7, k=2).neb_steps == 7
    res = CliRunner().invoke(app, ["sample", "x.xyz", "--method", "irc", "--keep-every", "2",
                                   "--out", str(tmp_path / "o.xyz")])
    assert res.exit_code == 2 and "keep_every: not a setting of method 'irc'" in res.output
