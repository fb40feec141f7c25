"""`horm demo`: the whole pipeline on the bundled data (see horm.demo: settings, run, results, report)."""

from __future__ import annotations

from pathlib import Path

import typer

from horm.cli import app
from horm.cli._common import check_out_dir, friendly


@app.command("demo")
@friendly
def demo_cmd(out_dir: Path = typer.Option(Path("demo_out"), "--out", "-o", help="where results go"),
             quick: bool = typer.Option(False, "--quick", help="small budget (≤ 3 min): a smoke test of every stage"),
             seed: int = typer.Option(0, help="seed of training, sampling and splits")):
    """Train E-F and E-F-H models on the bundled xTB data, evaluate them, run TS searches, write report.md."""
    from horm.demo import run_demo

    check_out_dir(out_dir)
    run_demo(str(out_dir), quick=quick, seed=seed)
