"""`horm data ...`: info, convert, export, stats, split."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from horm.cli import app
from horm.cli._common import ENERGY_KEY as _EK
from horm.cli._common import FORCES_KEY as _FK
from horm.cli._common import HESSIAN_KEY as _HK
from horm.cli._common import OUTLIERS_HELP, check_out_dir, check_out_file, friendly
from horm.cli._common import label_keys as _keys
from horm.errors import UsageError

_SRC_HELP = "horm store, HORM LMDB (file or dir), xyz/extxyz, .traj or ASE .db"
data_app = typer.Typer(no_args_is_help=True, help="Inspect, convert, split and plot Hessian datasets.")
app.add_typer(data_app, name="data")
out = Console()


@data_app.command("info")
@friendly
def info_cmd(path: Path = typer.Argument(..., help=_SRC_HELP),
             as_json: bool = typer.Option(False, "--json", help="print the summary as one JSON object"),
             full: bool = typer.Option(False, "--full", help="read every sample (default: the count from the "
                                       "file, the rest from a seeded sample of 1,000)"),
             energy_key: Optional[str] = _EK, forces_key: Optional[str] = _FK, hessian_key: Optional[str] = _HK):
    """Print sample count, atom-count range, elements, fields and units."""
    from horm.data.io import level_of_theory, open_dataset
    from horm.data.stats import INFO_SAMPLE, dataset_info
    from horm.progress import passes

    ds = open_dataset(path, _keys(energy_key, forces_key, hessian_key))
    with passes(full and not as_json) as progress:
        info = dataset_info(ds, str(path), level_of_theory(ds), sample=None if full else INFO_SAMPLE,
                            progress=progress)
    if as_json:
        import dataclasses
        import json

        print(json.dumps(dataclasses.asdict(info), default=str))
        return
    t = Table(title=f"{path}", show_header=False)
    t.add_row("samples", str(info.n_samples))
    sampled = info.n_read < info.n_samples
    if sampled:
        t.add_row("read", f"a seeded sample of {info.n_read} (the rows below are estimates; --full reads all)")
    t.add_row("atoms per sample", f"{info.natoms_min}–{info.natoms_max} (mean {info.natoms_mean:.1f})")
    t.add_row("elements", " ".join(info.elements))
    t.add_row("reactions", f"≥ {info.n_reactions} (in the sample)" if sampled else str(info.n_reactions))
    t.add_row("fields", ", ".join(info.fields))
    t.add_row("units", ", ".join(f"{k} {v}" for k, v in info.units.items()))
    t.add_row("level of theory", info.level_of_theory)
    t.add_row("origins", ", ".join(f"{k}: {v}" for k, v in sorted(info.origins.items())))
    if info.n_failures:
        t.add_row("failures", f"{info.n_failures} (in the store's failures table)")
    out.print(t)


@data_app.command("convert")
@friendly
def convert_cmd(src: Path = typer.Argument(..., help=_SRC_HELP),
                dst: Path = typer.Argument(..., help="new horm store, or an .extxyz/.xyz/.traj/.db file (exported)"),
                overwrite: bool = typer.Option(False, help="replace DST if it exists"),
                resume: bool = typer.Option(False, help="append to DST, skipping samples already there"),
                allow_mixed: bool = typer.Option(False, "--allow-mixed",
                                                 help="with --resume: append samples of another level of theory "
                                                      "(DST is then marked 'mixed')"),
                allow_outliers: bool = typer.Option(False, "--allow-outliers", help=OUTLIERS_HELP),
                energy_key: Optional[str] = _EK, forces_key: Optional[str] = _FK, hessian_key: Optional[str] = _HK):
    """Convert SRC into a horm store (lossless; float32 Hessians); to an ASE file, export it."""
    from horm.data.convert import convert
    from horm.data.formats import is_ase_path

    keys = _keys(energy_key, forces_key, hessian_key)
    check_out_file(dst)
    if is_ase_path(dst):
        if resume:
            raise UsageError(f"{dst}: --resume needs a horm store, not an ASE file")
        _export(src, dst, overwrite, keys)
        return
    store = convert(src, dst, overwrite=overwrite, resume=resume, keys=keys, allow_mixed=allow_mixed,
                    allow_outliers=allow_outliers)
    out.print(f"wrote {len(store)} samples to {dst} ({dst.stat().st_size / max(len(store), 1):.0f} bytes/sample)")


def _label_lines(path: Path) -> list[str]:
    from horm.data.plausibility import label_report
    from horm.data.store import HessianStore

    with HessianStore.open(path) as store:
        return label_report(store, str(path))


def _export(src: Path, dst: Path, overwrite: bool, keys) -> None:
    from horm.data.convert import export

    n = export(src, dst, overwrite=overwrite, keys=keys)
    out.print(f"wrote {n} structures to {dst} (energy, forces, flattened 'hessian'; read with ase.io.read)",
              highlight=False)


@data_app.command("export")
@friendly
def export_cmd(src: Path = typer.Argument(..., help=_SRC_HELP),
               dst: Path = typer.Argument(..., help="out.extxyz, out.xyz, out.traj or out.db"),
               overwrite: bool = typer.Option(False, help="replace DST if it exists"),
               energy_key: Optional[str] = _EK, forces_key: Optional[str] = _FK, hessian_key: Optional[str] = _HK):
    """Export SRC through ASE: energy, forces and the Hessian flattened (9N² floats) under 'hessian'
    (extxyz/traj: atoms.info; db: row.data)."""
    check_out_file(dst)
    _export(src, dst, overwrite, _keys(energy_key, forces_key, hessian_key))


@data_app.command("verify")
@friendly
def verify_cmd(path: Path = typer.Argument(..., help="horm store"),
               labels: bool = typer.Option(False, "--labels", help="check every sample's labels too: finite, and "
                                           "within the bounds of horm.data.plausibility (see README)")):
    """Check every record's checksum and the store's structure (with --labels, the labels too);
    exit 1 if anything is damaged or implausible."""
    from horm.data.verify import verify_store

    rep = verify_store(path)
    bad_labels = _label_lines(path) if labels and rep.ok else []
    for line in rep.damaged + bad_labels:
        out.print(f"[red]{'implausible' if line in bad_labels else 'damaged'}:[/red] {line}", highlight=False,
                  soft_wrap=True)
    if not rep.protected and rep.n_samples:
        out.print(f"{path}: unprotected (schema 1 store without checksums): only its structure was checked; "
                  "`horm data convert` it to a new store to add checksums", highlight=False, soft_wrap=True)
    out.print(f"{path}: {rep.n_samples} samples in {rep.n_chunks} chunks, {rep.n_keys} index rows, "
              f"{rep.n_failures} failure rows" + (", labels checked" if labels and rep.ok else "") + ": "
              + ("ok" if rep.ok and not bad_labels else f"{len(rep.damaged)} damaged, {len(bad_labels)} implausible"),
              highlight=False, soft_wrap=True)
    if not rep.ok or bad_labels:
        raise typer.Exit(1)


@data_app.command("stats")
@friendly
def stats_cmd(paths: list[Path] = typer.Argument(..., help="one or more datasets"),
              out_dir: Path = typer.Option(Path("stats"), "--out", "-o", help="directory for the PNG panels")):
    """Write the Fig. 1 panels (atoms, referenced energy, imaginary frequencies) as PNG."""
    from horm.data.stats import fig1_report

    check_out_dir(out_dir)
    out.print("\n".join(fig1_report(paths, out_dir)), highlight=False)


@data_app.command("split")
@friendly
def split_cmd(src: Path = typer.Argument(..., help="dataset to split"),
              out_dir: Path = typer.Option(..., "--out", "-o", help="writes train.hstore and val.hstore here"),
              val: float = typer.Option(0.1, help="fraction of reactions for validation"),
              seed: int = typer.Option(0, help="split seed"),
              overwrite: bool = typer.Option(False),
              allow_outliers: bool = typer.Option(False, "--allow-outliers", help=OUTLIERS_HELP)):
    """Deterministic reaction-level train/val split into two horm stores (one streaming pass)."""
    from horm.data.splits import split_dataset

    check_out_dir(out_dir)
    res = split_dataset(src, out_dir, val, seed, overwrite=overwrite, allow_outliers=allow_outliers,
                        show_progress=True)
    notes = res.pop("notes")
    out.print("\n".join([f"note: {line}" for line in notes] +
                        [f"{name}: {r['samples']} samples from {r['reactions']} reactions -> {r['path']}"
                         for name, r in res.items()]), highlight=False, soft_wrap=True)
