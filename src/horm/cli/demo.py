"""`horm demo`: the main job on the bundled data."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from horm.cli import app
from horm.cli._common import friendly

out = Console()
SHARED_SAMPLE = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "horm_sample_100.lmdb"


@app.command("demo")
@friendly
def demo_cmd(out_dir: Path = typer.Option(Path("demo_out"), "--out", help="where results go"),
             quick: bool = typer.Option(False, help="smaller, faster run")):
    """Run the data pipeline on the shared HORM sample: info, conversion, Fig. 1 panels."""
    from horm.data.convert import convert
    from horm.data.io import level_of_theory
    from horm.data.stats import dataset_info, fig1_quantities, plot_fig1

    out_dir.mkdir(parents=True, exist_ok=True)
    src = SHARED_SAMPLE
    if not src.exists():
        raise typer.BadParameter(f"{src} not found (the shared HORM sample)")
    out.print(f"[bold]horm demo[/bold]: converting {src} and drawing Fig. 1 into {out_dir}/")
    store = convert(src, out_dir / "horm_sample.hstore", overwrite=True)
    info = dataset_info(store, str(src), level_of_theory(store))
    out.print(f"{info.n_samples} samples, {info.natoms_min}–{info.natoms_max} atoms, elements {' '.join(info.elements)}")
    for p in plot_fig1({"HORM sample": fig1_quantities(store)}, out_dir):
        out.print(f"wrote {p}")
