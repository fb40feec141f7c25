"""benchmarks/gpu_check.py: one line and exit 0 without CUDA; --cpu-smoke runs every row end to end."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
NO_CUDA_ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
EXPECTED = [
    ("train E-F-H", "horm-equiformer_v2"), ("train E-F-H", "leftnet"),
    ("hessian autograd", "horm-equiformer_v2"), ("hessian autograd", "leftnet"),
    ("hessian row loop", "horm-equiformer_v2"), ("hessian row loop", "leftnet"),
    ("hessian direct head", "hip-equiformer_v2"), ("hessian direct head", "hessian_head"),
]


def test_without_cuda_one_line_and_exit_0():
    run = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120, env=NO_CUDA_ENV)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout == "no CUDA device: gpu_check skipped\n" and run.stderr == ""


def test_cpu_smoke_prints_every_row(horm_sample_path, tmp_path):
    out = tmp_path / "check.json"
    missing = tmp_path / "none.lmdb"  # absent: the script builds a small synthetic file in a temporary folder
    run = subprocess.run([sys.executable, str(SCRIPT), str(missing), "--cpu-smoke", "--json", str(out)],
                         capture_output=True, text=True, timeout=120, env=NO_CUDA_ENV)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    res = json.loads(out.read_text())
    rows = res["rows"]
    assert [(r["task"], r["model"]) for r in rows] == EXPECTED
    assert res["sizes"]["batch"] == 4
    for r in rows:
        assert r["value"] is not None and math.isfinite(r["value"]) and r["value"] > 0, r
        assert r["peak_mib"] is None  # measured on CUDA only
        assert r["unit"] == ("steps/s" if r["task"] == "train E-F-H" else "ms/molecule")
    table = [ln.split() for ln in run.stdout.splitlines()]
    assert ["task", "model", "preset", "batch", "value", "unit", "peak", "MiB", "note"] in table
    for task, model in EXPECTED:
        assert any(" ".join(t[:len(task.split()) + 1]) == f"{task} {model}" for t in table), (task, model)
    assert not missing.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["check.json"]
