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
    fraction: Optional[float] = typer.Option(None, help="neb: fraction of intermediate snapshots kept"),
    keep_every: Optional[int] = typer.Option(None, help="neb: snapshot every this many NEB steps"),
    steps: Optional[int] = typer.Option(None, help="neb: plain-NEB and CI-NEB steps (each)"),
    k: Optional[int] = typer.Option(None, help="irc: points kept per side"),
    seed: int = typer.Option(0, help="seed for the kept snapshots (with the reaction id)"),
    overwrite: bool = typer.Option(False, help="replace OUT if it is a store that exists"),
    threads: Optional[int] = threads_option(),
    device: str = engine_device_option(),
    charge: Optional[int] = typer.Option(None, "--charge", help="total charge (overrides the reaction files')"),
    multiplicity: Optional[int] = typer.Option(None, "--multiplicity",
                                               help="2S+1 (overrides the files'; odd electrons default to 2)"),
):
    """Sample geometries along reaction paths (NEB iterations or IRC points) for labelling."""
    from rich.console import Console

    from horm.data.convert import progress_bar
    from horm.label.engine import get_engine
    from horm.sample.run import GeometryWriter, check_method, default_settings, reaction_files, sample_reactions

    check_out_file(out)
    try:
        check_method(method)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    settings = default_settings(method)  # type: ignore[arg-type]
    for name, value in (("fraction", fraction), ("keep_every", keep_every), ("k", k)):
        if value is not None and hasattr(settings, name):
            setattr(settings, name, value)
    if steps is not None and method == "neb":
        settings.neb_steps = settings.ci_steps = steps
    if hasattr(settings, "seed"):
        settings.seed = seed
    settings.__post_init__()
    paths = reaction_files(reactions)
    if workers is None:
        from horm.runtime import default_workers

        workers = default_workers(len(paths))
    try:
        eng = get_engine(engine, **engine_settings(engine, device, threads))
    except (ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc)) from None
    writer = GeometryWriter(out, method, eng.name, overwrite=overwrite)
    n_geo = n_fail = 0
    try:
        with progress_bar() as prog:
            task = prog.add_task(f"sample ({method}/{eng.name})", total=len(paths))
            for res in sample_reactions(paths, method, eng, settings, workers=workers,  # type: ignore[arg-type]
                                        spin=(charge, multiplicity), threads=threads):
                writer.add(res)
                n_geo += len(res.samples)
                n_fail += len(res.failures)
                prog.advance(task)
    finally:
        writer.close()
    Console().print(f"sampled {n_geo} geometries from {len(paths)} reactions ({n_fail} failures recorded) -> {out}")
