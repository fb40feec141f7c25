"""``horm model info MODEL`` (what a model file says about itself) and ``horm model list`` (registered names)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from horm.cli import app
from horm.cli._common import friendly

model_app = typer.Typer(no_args_is_help=True, help="Model files and the model registry.")
app.add_typer(model_app, name="model")


def _format_info(info: dict) -> list[tuple[str, str]]:
    from ase.data import chemical_symbols

    els = info["elements"]
    elements = "unknown" if els is None else " ".join(chemical_symbols[z] for z in els)
    data = info["data"]
    data_s = ", ".join(f"{k}={v}" for k, v in data.items() if v is not None) if data else "unknown"
    refs = ", ".join(f"{chemical_symbols[z]} {e:.4f}" for z, e in sorted(info["atom_ref"].items())) or "none"
    return [("file", info["path"]), ("format version", str(info["format_version"] or "checkpoint")),
            ("architecture", info["architecture"]), ("parameters", f"{info['parameters']:,}"),
            ("dtype", info["dtype"]), ("elements", elements), ("level of theory", info["level_of_theory"]),
            ("training data", data_s), ("reference energies (eV)", refs),
            ("horm version", info["horm_version"]), ("torch version", info["torch_version"]),
            ("created", info["created"])]


@model_app.command("info")
@friendly
def info_cmd(model: Path = typer.Argument(..., help="model.pt, a horm train checkpoint or a run folder")):
    """Print a model file's metadata: versions, elements, level of theory, dtype, training data."""
    from horm.models.files import model_info

    out = Console()
    for key, value in _format_info(model_info(model)):
        out.print(f"{key:24s} {value}", highlight=False, markup=False)


@model_app.command("list")
@friendly
def list_cmd():
    """Print the registered model names, one per line (name first; then forces mode and presets)."""
    from horm.models.base import _model_cls, list_models

    names = list_models()
    width = max(map(len, names), default=0)
    for name in names:
        cls = _model_cls(name)
        typer.echo(f"{name:{width}s}  forces={cls.forces_mode:8s} presets={','.join(cls.presets)}")
