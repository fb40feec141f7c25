"""`horm demo`'s shipped-models stage: skipped with a line when none is installed; otherwise the
shipped models run the TS search on the demo's test reactions next to the other potentials."""

from __future__ import annotations

import io
import json
import shutil

import torch
from rich.console import Console

import horm.pretrained as pre
from horm.demo import Demo, DemoSettings
from horm.demo.settings import slug


def _demo(tmp_path, **kw):
    from horm.datasets import bundled_test_reactions

    buf = io.StringIO()
    d = Demo(DemoSettings(out=str(tmp_path / "demo"), workers=1, n_ts=1, **kw), Console(file=buf, width=200))
    d.out.mkdir(parents=True)
    d.test_reactions = bundled_test_reactions()[:1]
    return d, buf


def test_skipped_with_a_line_when_none_is_shipped(tmp_path, monkeypatch):
    d = tmp_path / "pretrained"
    d.mkdir()
    shutil.copy(pre.HERE / "manifest.json", d / "manifest.json")
    monkeypatch.setenv(pre.ENV, str(d))
    demo, buf = _demo(tmp_path)
    demo.shipped()
    assert "shipped models: none in this installation" in buf.getvalue()
    assert demo.results.ts_summary == {} and not (demo.out / "ts").exists()


def test_shipped_model_runs_next_to_the_reference(tmp_path, monkeypatch):
    from horm.models.registry import build_model
    from horm.models.files import save_model

    d = tmp_path / "pretrained"
    d.mkdir()
    shutil.copy(pre.HERE / "manifest.json", d / "manifest.json")
    monkeypatch.setenv(pre.ENV, str(d))
    torch.manual_seed(0)
    m = build_model("leftnet", "tiny", hidden_channels=8, num_layers=1)
    m.set_atom_ref({1: -10.0, 6: -40.0, 7: -55.0, 8: -70.0})
    save_model(m, tmp_path / "run" / "model.pt")
    pre.install("t1x-xtb-leftnet-efh", tmp_path / "run")
    demo, buf = _demo(tmp_path, shipped_timeout=15.0)
    demo._ts_search("xtb (reference)", "xtb", 60.0)
    demo.shipped()
    label = "t1x-xtb-leftnet-efh (shipped)"
    assert demo.results.shipped_models == ["t1x-xtb-leftnet-efh"]
    assert demo.results.ts_summary[label]["n"] == 1 and label in demo.results.ts_compare
    meta = json.loads((demo.out / "ts" / slug(label) / "benchmark.json").read_text())
    assert meta["potential"] == "t1x-xtb-leftnet-efh"  # the workers resolved the name
    assert (demo.out / demo.results.fig2).is_file()


def test_the_deadline_leaves_out_shipped_models_that_would_overrun(tmp_path, monkeypatch):
    """With less time left than one round of minimum timeouts, no shipped model starts and the
    ones left out are named."""
    import time

    d = tmp_path / "pretrained"
    d.mkdir()
    shutil.copy(pre.HERE / "manifest.json", d / "manifest.json")
    monkeypatch.setenv(pre.ENV, str(d))
    from horm.models.registry import build_model
    from horm.models.files import save_model

    m = build_model("leftnet", "tiny", hidden_channels=8, num_layers=1)
    save_model(m, tmp_path / "run" / "model.pt")
    pre.install("t1x-xtb-leftnet-efh", tmp_path / "run")
    demo, buf = _demo(tmp_path, deadline_s=100.0, report_reserve_s=10.0, shipped_min_timeout=20.0)
    demo.t_start = time.perf_counter() - 75.0  # 15 s left: under one 20 s round
    demo.shipped()
    assert demo.results.shipped_models == [] and demo.results.shipped_left_out == ["t1x-xtb-leftnet-efh"]
    assert "not run: t1x-xtb-leftnet-efh" in buf.getvalue()
    assert not (demo.out / "ts").exists()


def test_the_papers_pair_runs_first_so_a_deadline_leaves_out_the_others(tmp_path, monkeypatch):
    """Shipped models start E-F-H, then E-F (whose proposals the demo refines), then the rest:
    the order in which a short deadline names them left out."""
    import time

    monkeypatch.setattr(pre, "available", lambda: list(pre.NAMES))
    demo, buf = _demo(tmp_path, deadline_s=100.0, report_reserve_s=10.0, shipped_min_timeout=20.0)
    demo.t_start = time.perf_counter() - 85.0  # 5 s left: no model starts
    demo.shipped()
    left = demo.results.shipped_left_out
    assert sorted(left) == sorted(pre.NAMES) and left[:2] == ["t1x-xtb-leftnet-efh", "t1x-xtb-leftnet-ef"]
