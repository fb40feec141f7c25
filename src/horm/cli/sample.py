"""`horm sample REACTIONS... --method neb|irc --engine xtb --out geoms.xyz|geoms.hstore`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from horm.cli import app
from horm.cli._common import check_out_file, friendly
from horm.cli._options import engine_device_option, engine_settings, threads_option


@app.command("sample")
@friendly
def sample_cmd(
    reactions: list[Path] = typer.Argument(..., help="reaction xyz files (reactant, product frames) or directories"),
    method: str = typer.Option("neb", "--method", "-m", help="neb (T1x-style) or irc (RGD1-style)"),
    engine: str = typer.Option("xtb", "--engine", "-e", help="potential for the path: xtb or dft"),
    out: Path = typer.Option(..., "--out", "-o", help=".xyz/.extxyz/.traj/.db (via ASE) or a horm store"),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1,
                                          help="reactions sampled in parallel (default: one per core)"),
    ray: Optional[str] = typer.Option(None, "--ray", help="run on Ray: 'local' or a cluster ADDRESS"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="seconds per reaction; longer is a failure"),
    fraction: Optional[float] = typer.Option(None, help="neb: fraction of intermediate snapshots kept"),
    keep_every: Optional[int] = typer.Option(None, help="neb: snapshot every this many NEB steps"),
    steps: Optional[int] = typer.Option(None, help="NEB steps (neb: plain and CI-NEB, each; irc: the TS-guess NEB)"),
    k: Optional[int] = typer.Option(None, help="irc: points kept per side"),
    seed: Optional[int] = typer.Option(None, help="neb: seed for the kept snapshots (with the reaction id)"),
    overwrite: bool = typer.Option(False, help="replace OUT if it is a store that exists"),
    threads: Optional[int] = threads_option(),
    device: str = engine_device_option(),
    charge: Optional[int] = typer.Option(None, "--charge", help="total charge (overrides the reaction files')"),
    multiplicity: Optional[int] = typer.Option(None, "--multiplicity",
                                               help="2S+1 (overrides the files'; odd electrons default to 2)"),
):
    """Sample geometries along reaction paths (NEB iterations or IRC points) for labelling.

    An option that does not apply to the chosen --method is an error."""
    from rich.console import Console

    from horm.jobs import JobOptions
    from horm.label import get_engine
    from horm.runtime import default_workers
    from horm.sample.run import reaction_files, sample_to, settings_for

    given = {"fraction": fraction, "keep_every": keep_every, "k": k, "seed": seed}
    settings = settings_for(method, steps=steps, **{n: v for n, v in given.items() if v is not None})  # type: ignore[arg-type]
    paths = reaction_files(reactions)
    check_out_file(out)
    jobs = JobOptions(workers=default_workers(len(paths)) if workers is None else workers, ray=ray, timeout=timeout,
                      threads=threads or 1)
    try:
        eng = get_engine(engine, **engine_settings(engine, device, threads))
    except (ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc)) from None
    summary = sample_to(out, paths, method, eng, settings, jobs, overwrite=overwrite,  # type: ignore[arg-type]
                        spin=(charge, multiplicity), threads=threads)
    Console().print(summary.line(), highlight=False)
