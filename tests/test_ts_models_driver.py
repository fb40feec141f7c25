"""benchmarks/ts_models.py end to end at smoke size: data → 4 trainings → evaluation → report,
and a rerun that finds every stage done."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("tblite")

REPO = Path(__file__).resolve().parents[1]


def test_driver_smoke(t1x_dir, tmp_path):
    rx = tmp_path / "rx"
    rx.mkdir()
    for r in ("rxn2587", "rxn4440", "rxn1185", "rxn3122"):
        shutil.copy(t1x_dir / f"{r}.xyz", rx / f"{r}.xyz")
    cmd = [sys.executable, str(REPO / "benchmarks" / "ts_models.py"), "--smoke", "--workers", "1", "--reactions",
           str(rx), "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
           "--stages", "data", "train", "evaluate", "report"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    names = ("t1x-xtb-leftnet-ef", "t1x-xtb-leftnet-efh", "t1x-xtb-leftnet-df-efh", "t1x-xtb-hessian-head")
    for n in names:
        assert (tmp_path / "out" / "runs" / n / "model.pt").is_file()
    report = (tmp_path / "out" / "report.md").read_text()
    for n in names:
        assert f"| {n} |" in report
    assert "leftnet E-F-H ≥ 60 % of xTB's intended" in report
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0
    assert again.stdout.count("exists, skipped") == 5  # data and the four trainings
