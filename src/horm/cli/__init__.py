"""The ``horm`` command line: a thin typer layer over library functions.

Each verb group lives in its own module (``horm.cli.<name>``) and registers itself on
``app``; a command parses arguments, builds a config and calls one library function.
"""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="horm: Hessian-informed reactive ML potentials (data, label, train, evaluate, ts, demo).")

def _print_version(value: bool) -> None:
    if value:
        from horm._version import __version__

        typer.echo(f"horm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="print the horm version and exit")) -> None:
    """horm: Hessian-informed reactive ML potentials (data, label, train, evaluate, ts, demo)."""


# Sub-modules that add commands to `app`. Missing ones are skipped so that partial
# installs still work; a broken one raises at import so that bugs are not hidden.
_COMMAND_MODULES = ("data", "label", "sample", "train", "evaluate", "ts", "model", "learn", "demo")
for _name in _COMMAND_MODULES:
    try:
        importlib.import_module(f"horm.cli.{_name}")
    except ModuleNotFoundError as exc:  # module not written yet
        if exc.name != f"horm.cli.{_name}":
            raise


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
