"""`horm demo --quick` end to end, as CI runs it: report complete, numbers finite, PNGs real."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _bundled_or_skip():
    from horm.datasets import bundled_path

    try:
        return bundled_path()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"bundled dataset not available: {exc}")


def test_quick_demo_report(tmp_path):
    _bundled_or_skip()
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "horm.cli", "demo", "--quick", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = (out / "report.md").read_text()
    for heading in ("## Summary", "Table 1", "Table 2", "Table A.1", "## TS search", "## Exact configuration",
                    "## Out-of-distribution"):
        assert heading in report, heading
    for label in ("leftnet E-F", "leftnet E-F-H", "leftnet-df E-F", "leftnet-df E-F-H", "xtb (reference)"):
        assert label in report, label
    # every Hessian-MAE cell of Table 1 is a finite number
    rows = [ln for ln in report.splitlines() if ln.startswith("| Hessian MAE |")]
    assert len(rows) >= 4  # mean and median, val and ood
    for ln in rows:
        cells = [c.strip() for c in ln.strip("|").split("|")][3:]
        assert cells and all(math.isfinite(float(c)) for c in cells), ln
    # linked PNGs exist and are real images
    pngs = re.findall(r"\]\(([^)]+\.png)\)", report)
    assert len(pngs) >= 5
    for p in pngs:
        data = (out / p).read_bytes()
        assert data[:4] == b"\x89PNG" and len(data) > 5000, p
    assert not (out / "report.md.tmp").exists()


def test_demo_tables_are_deterministic(tmp_path):
    """Same seed, same tables (train + evaluate stages on a very small budget)."""
    _bundled_or_skip()
    from horm.demo import Demo, DemoSettings

    tables = []
    for k in range(2):
        s = DemoSettings(out=str(tmp_path / f"d{k}"), quick=True, seed=1, steps=6, batch_size=4, max_eval=6, n_ts=0)
        d = Demo(s)
        d.plan()
        d.results.variants = d.results.variants[:2]
        d.train()
        d.evaluate()
        tables.append([(Path(s.out) / "eval_val" / f"{t}.csv").read_text() for t in ("table1", "tableA1")])
    assert tables[0] == tables[1]
