"""`horm label INPUT --engine xtb|dft --out STORE [--workers N] [--ray ADDRESS|local]`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from horm.cli import app
from horm.cli._common import OUTLIERS_HELP, check_out_file, friendly, positive
from horm.cli._options import engine_device_option, engine_settings, threads_option


def parse_options(pairs: list[str] | None) -> dict:
    """``["max_iter=1", "method=GFN2-xTB"]`` -> ``{"max_iter": 1, "method": "GFN2-xTB"}`` (YAML scalars)."""
    import yaml

    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise typer.BadParameter(f"expected KEY=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


@app.command("label")
@friendly
def label_cmd(
    input: Path = typer.Argument(..., help="xyz/extxyz file, horm store, HORM LMDB, or a directory of xyz"),
    engine: str = typer.Option(..., "--engine", "-e", help="labelling engine: xtb or dft"),
    out: Path = typer.Option(..., "--out", "-o", help="horm store to create or resume (not .xyz/.extxyz/.traj/.db)"),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1,
                                          help="parallel computations (default: one per core); capped at the "
                                               "core count with a warning, HORM_MAX_WORKERS=N raises the cap"),
    ray: Optional[str] = typer.Option(None, "--ray", help="run on Ray: 'local' or a cluster ADDRESS"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="recompute items in the failures table"),
    timeout: Optional[float] = typer.Option(None, "--timeout", callback=positive,
                                            help="seconds per item (> 0); longer is a failure"),
    allow_mixed: bool = typer.Option(False, "--allow-mixed",
                                     help="append to a store of another level of theory/engine/settings "
                                          "(the store is then marked 'mixed')"),
    allow_outliers: bool = typer.Option(False, "--allow-outliers", help=OUTLIERS_HELP),
    option: Optional[list[str]] = typer.Option(None, "--set", help="engine setting KEY=VALUE (repeatable)"),
    progress: bool = typer.Option(True, help="show a progress bar"),
    threads: Optional[int] = threads_option(),
    device: str = engine_device_option(),
    charge: Optional[int] = typer.Option(None, "--charge", help="total charge (overrides the input's)"),
    multiplicity: Optional[int] = typer.Option(None, "--multiplicity",
                                               help="2S+1 (overrides the input's; odd electrons default to 2)"),
):
    """Compute energy, forces and Hessian for every geometry of INPUT; resumable."""
    from horm.data.formats import check_store_path
    from horm.jobs import output_lock

    check_store_path(out)
    check_out_file(out)
    with output_lock(out):  # before anything slow: a second run on OUT is refused at once
        from horm.label import get_engine
        from horm.label.runner import label

        try:
            eng = get_engine(engine, **{**engine_settings(engine, device, threads), **parse_options(option)})
        except (ValueError, TypeError) as exc:
            raise typer.BadParameter(str(exc)) from None
        summary = label(input, eng, out, workers=workers, ray_address=ray, retry_failed=retry_failed,
                        timeout=timeout, show_progress=progress, charge=charge, multiplicity=multiplicity,
                        threads=threads, allow_mixed=allow_mixed, allow_outliers=allow_outliers)
    if summary.labelled == 0 and summary.failed and not summary.skipped:
        raise typer.Exit(1)
