"""`horm ts benchmark`: a killed run resumes without redoing finished reactions; a slow
reaction is killed at its timeout and recorded (and retried on request); picks are
reproducible by seed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("sella")
pytest.importorskip("tblite")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REACTIONS = SHARED / "data" / "t1x_val_reactions"
SMALL = ("rxn2587", "rxn1929")  # 5 and 6 atoms
# short runs: this test is about bookkeeping, not about converging every stage
FAST = {"path": {"method": "none", "n_images": 5}, "tsopt": {"max_steps": 5},
        "irc": {"max_steps": 10, "opt_max_steps": 30}}


@pytest.fixture()
def reaction_dir(tmp_path):
    if not REACTIONS.exists():
        pytest.skip(f"shared reaction set not found at {REACTIONS}")
    d = tmp_path / "rxns"
    d.mkdir()
    for name in SMALL:
        shutil.copy(REACTIONS / f"{name}.xyz", d)
    return d


def _cmd(reaction_dir: Path, out: Path, settings: Path) -> list[str]:
    return [sys.executable, "-m", "horm.cli", "ts", "benchmark", str(reaction_dir), "--potential", "xtb",
            "--out", str(out), "--workers", "1", "--timeout", "120", "--settings", str(settings)]


def _lines(out: Path) -> list[dict]:
    p = out / "results.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.exists() else []


def test_killed_benchmark_resumes_without_redoing_finished_reactions(reaction_dir, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from horm.cli import app
    from horm.ts.benchmark import run_benchmark, select_reactions
    from horm.ts.workflow import RunSettings

    settings = tmp_path / "fast.yaml"
    settings.write_text(yaml.safe_dump(FAST))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_cmd(reaction_dir, out, settings), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    t0 = time.time()
    while not _lines(out) and time.time() - t0 < 120 and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # kill the benchmark after its first reaction landed
    proc.wait(timeout=30)
    first = _lines(out)
    assert len(first) == 1, proc.stderr.read().decode()[-2000:]
    done = first[0]["rxn"]
    rec_file = out / done / "record.json"
    stamp = rec_file.stat().st_mtime_ns
    log = (out / done / "log.txt").read_text()  # the worker wrote a line per stage as it finished
    assert any(ln.startswith("path ") for ln in log.splitlines()), log
    assert json.loads(rec_file.read_text())["horm_version"]

    # rerun (same potential and settings): only the missing reaction runs
    files = select_reactions(reaction_dir)
    recs = run_benchmark(files, "xtb", out, workers=1, timeout=120, settings=RunSettings.from_dict(FAST))
    lines = _lines(out)
    assert sorted(r["rxn"] for r in lines) == sorted(SMALL)  # each reaction exactly once
    assert lines[0] == first[0] and len(recs) == 2
    assert rec_file.stat().st_mtime_ns == stamp  # the finished reaction was not run again
    # a third run has nothing left to do
    t0 = time.time()
    assert len(run_benchmark(files, "xtb", out, settings=RunSettings.from_dict(FAST))) == 2
    assert time.time() - t0 < 5 and len(_lines(out)) == 2

    # summary against a reference run (here: itself): same TSs, zero RMSD and barrier error
    res = CliRunner().invoke(app, ["ts", "summary", str(out), "--reference", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "ts_benchmark.png").stat().st_size > 0
    result = json.loads((out / "summary.json").read_text())
    assert result["summary"]["n"] == 2
    ref = result["reference"]
    assert ref["n_both_solved"] == sum(r["intended"] for r in lines)
    if ref["n_both_solved"]:
        assert ref["ts_rmsd_mean"] < 1e-6 and ref["barrier_mae_kcal_mol"] < 1e-9


def test_a_reaction_over_its_timeout_is_killed_and_recorded(reaction_dir, tmp_path):
    from horm.ts.benchmark import run_benchmark

    from horm.ts.workflow import RunSettings

    files = [reaction_dir / f"{SMALL[1]}.xyz"]
    fast = RunSettings.from_dict(FAST)
    t0 = time.time()
    recs = run_benchmark(files, "xtb", tmp_path / "run", workers=1, timeout=0.5, settings=fast)
    assert time.time() - t0 < 30
    assert len(recs) == 1 and recs[0]["status"] == "timeout" and not recs[0]["intended"]
    # a plain rerun keeps the timeout; --retry-failed runs it again and supersedes it
    assert run_benchmark(files, "xtb", tmp_path / "run", timeout=0.5, settings=fast)[0]["status"] == "timeout"
    recs = run_benchmark(files, "xtb", tmp_path / "run", timeout=120, settings=fast, retry_failed=True)
    assert len(recs) == 1 and recs[0]["status"] == "done" and recs[0]["ts_success"]
    assert len(_lines(tmp_path / "run")) == 2


def test_a_benchmark_folder_refuses_another_potential(reaction_dir, tmp_path):
    from horm.errors import HormError
    from horm.ts.benchmark import run_benchmark

    out = tmp_path / "run"
    out.mkdir()
    (out / "benchmark.json").write_text(json.dumps({"potential": "dft", "settings": {}}))
    with pytest.raises(HormError, match="dft"):
        run_benchmark([reaction_dir / f"{SMALL[0]}.xyz"], "xtb", out)


def test_reaction_pick_is_fixed_by_the_seed(reaction_dir):
    from horm.ts.benchmark import select_reactions

    if len(list(REACTIONS.glob("*.xyz"))) < 60:
        pytest.skip("needs the full shared reaction set")
    a = select_reactions(REACTIONS, 50, seed=0)
    assert a == select_reactions(REACTIONS, 50, seed=0)
    assert a != select_reactions(REACTIONS, 50, seed=1)
    assert len(set(a)) == 50 and a == sorted(a)
