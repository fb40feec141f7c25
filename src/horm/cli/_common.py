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
