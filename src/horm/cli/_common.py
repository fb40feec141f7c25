"""Helpers shared by CLI modules: turn user-input errors into a one-line message and exit code 2."""

from __future__ import annotations

import functools

import typer
from rich.console import Console

from horm.errors import HormError

console = Console(stderr=True)


def friendly(fn):
    """Decorator: print a HormError or a ValueError as one red line and exit 2 instead of a traceback.

    ValueError is how options and configs report an invalid value (the message lists the
    valid ones), so every command gets the same treatment for it.
    """

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except (HormError, ValueError) as exc:
            console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


# label-key options for xyz/ASE input, the same on every verb that reads labels
ENERGY_KEY = typer.Option(None, "--energy-key", help="field holding the energy in xyz/ASE input (e.g. REF_energy)")
FORCES_KEY = typer.Option(None, "--forces-key", help="field holding the forces in xyz/ASE input (e.g. REF_forces)")
HESSIAN_KEY = typer.Option(None, "--hessian-key", help="field holding the flattened Hessian (e.g. REF_hessian)")


def label_keys(energy_key, forces_key, hessian_key):
    """The three option values as a :class:`horm.data.formats.LabelKeys`."""
    from horm.data.formats import LabelKeys

    return LabelKeys(energy_key, forces_key, hessian_key)
