"""``horm model info MODEL`` (what a model file says about itself), ``horm model list``
(shipped models by name, then the registered architectures) and ``horm model import``
(a released HORM/HIP checkpoint → our own safe model file)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from horm.cli import app
from horm.cli._common import friendly
from horm.errors import UsageError

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
    """Print the shipped models (names usable wherever a model is taken: shipped or not in this
    version, architecture, loss), then the registered architectures (forces and Hessian modes,
    presets); one per line, name first."""
    from horm.models.registry import describe_model, list_models
    from horm.pretrained import list_lines

    for line in list_lines():
        typer.echo(line)
    names = list_models()
    width = max(map(len, names), default=0)
    for name in names:
        typer.echo(describe_model(name).line(width))


def _parse_refs(text: str | None) -> dict[str, float] | None:
    """``"H=-16.71,C=-1035.5"`` → ``{"H": -16.71, "C": -1035.5}`` (values checked by the loader)."""
    if text is None:
        return None
    out: dict[str, float] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--atom-refs: {item!r} is not SYMBOL=eV (e.g. H=-16.71317,C=-1035.521)")
        out[key.strip()] = value.strip()
    return out


@model_app.command("import")
@friendly
def import_cmd(ckpt: Path = typer.Argument(..., help="a released HORM or HIP Lightning checkpoint (.ckpt)"),
               out: Path = typer.Argument(..., help="our model file to write (.pt)"),
               atom_refs: str = typer.Option(None, "--atom-refs",
                                             help="per-element energies in eV, SYMBOL=eV,...; default: the HORM fit"),
               force: bool = typer.Option(False, "--force", help="overwrite OUT if it exists")):
    """Load a HORM/HIP checkpoint strictly and safely, and write it as a horm model file with metadata."""
    from horm.models.files import import_checkpoint

    if out.exists() and not force:
        raise UsageError(f"{out}: exists (give --force to overwrite)")
    path, info = import_checkpoint(ckpt, out, atom_refs=_parse_refs(atom_refs))
    typer.echo(f"{path}: {info['architecture']} from {info['source_name']} (sha256 {info['source_sha256'][:16]}…), "
               f"{info['level_of_theory']}")
