"""`horm sample REACTIONS... --method neb|irc --engine xtb --out geoms.xyz|geoms.hstore`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from horm.cli import app
from horm.cli._common import friendly


@app.command("sample")
@friendly
def sample_cmd(
    reactions: list[Path] = typer.Argument(..., help="reaction xyz files (reactant, product frames) or directories"),
    method: str = typer.Option("neb", "--method", "-m", help="neb (T1x-style) or irc (RGD1-style)"),
    engine: str = typer.Option("xtb", "--engine", "-e", help="potential for the path: xtb or dft"),
    out: Path = typer.Option(..., "--out", "-o", help=".xyz/.extxyz/.traj/.db (via ASE) or a horm store"),
    workers: int = typer.Option(1, "--workers", "-j", help="reactions sampled in parallel"),
    ray: Optional[str] = typer.Option(None, "--ray", help="run on Ray: 'local' or a cluster ADDRESS"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="seconds per reaction; longer is a failure"),
    fraction: Optional[float] = typer.Option(None, help="neb: fraction of intermediate snapshots kept"),
    keep_every: Optional[int] = typer.Option(None, help="neb: snapshot every this many NEB steps"),
    steps: Optional[int] = typer.Option(None, help="NEB steps (neb: plain and CI-NEB, each; irc: the TS-guess NEB)"),
    k: Optional[int] = typer.Option(None, help="irc: points kept per side"),
    seed: Optional[int] = typer.Option(None, help="neb: seed for the kept snapshots (with the reaction id)"),
    overwrite: bool = typer.Option(False, help="replace OUT if it is a store that exists"),
    charge: Optional[int] = typer.Option(None, "--charge", help="total charge (overrides the reaction files')"),
    multiplicity: Optional[int] = typer.Option(None, "--multiplicity",
                                               help="2S+1 (overrides the files'; odd electrons default to 2)"),
):
    """Sample geometries along reaction paths (NEB iterations or IRC points) for labelling.

    An option that does not apply to the chosen --method is an error."""
    from rich.console import Console

    from horm.jobs import JobOptions
    from horm.label.engine import get_engine
    from horm.sample.run import reaction_files, sample_to, settings_for

    given = {"fraction": fraction, "keep_every": keep_every, "k": k, "seed": seed}
    settings = settings_for(method, steps=steps, **{n: v for n, v in given.items() if v is not None})  # type: ignore[arg-type]
    jobs = JobOptions(workers=workers, ray=ray, timeout=timeout)
    try:
        eng = get_engine(engine)
    except (ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc)) from None
    summary = sample_to(out, reaction_files(reactions), method, eng, settings, jobs, overwrite=overwrite,  # type: ignore[arg-type]
                        spin=(charge, multiplicity))
    Console().print(summary.line(), highlight=False)
