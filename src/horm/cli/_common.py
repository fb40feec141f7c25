"""Helpers shared by CLI modules: turn horm's own errors into one line and an exit status."""

from __future__ import annotations

import errno
import functools
import os
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from horm.errors import HormError, UsageError

console = Console(stderr=True)


def error_line(exc: BaseException) -> str:
    """The one-line message of ``exc``; never empty."""
    msg = " ".join(str(exc).split())
    return msg or f"{type(exc).__name__} (no details given)"


def friendly(fn):
    """Decorator: print a HormError as one red line instead of a traceback.

    Exit status 2 for a UsageError (bad option, setting or config value), 1 for any
    other HormError (bad data, failed labels, ...). Every other exception is a bug and
    keeps its traceback, except an OSError of a full disk (ENOSPC, EDQUOT): one line, status 1.
    ``HORM_DEBUG=1`` shows the traceback of HormErrors too.
    """

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except HormError as exc:
            if os.environ.get("HORM_DEBUG", "") not in ("", "0"):
                raise
            console.print(f"[red]error:[/red] {escape(error_line(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2 if isinstance(exc, UsageError) else 1) from None
        except OSError as exc:  # a full disk is no bug: one line, whatever was writing
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or os.environ.get("HORM_DEBUG", "") not in ("", "0"):
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            console.print(f"[red]error:[/red] {escape(where)}no space left on device ({escape(exc.strerror or '')})",
                          highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def positive(value):
    """typer callback: a number option that must be > 0 (None passes: not given)."""
    if value is not None and not value > 0:  # also refuses NaN
        raise typer.BadParameter(f"must be > 0, got {value}")
    return value


def check_out_dir(path: Path) -> Path:
    """An ``--out`` folder, checked before any work: not a file, creatable, writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK):
        raise UsageError(f"--out {path}: folder is not writable")
    return path


def check_out_file(path: Path) -> Path:
    """An ``--out`` file (a store, an xyz), checked before any work: not a folder, its folder writable."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"--out {path}: is a folder, expected a file")
    check_out_dir(path.parent if str(path.parent) else Path("."))
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"--out {path}: file is not writable")
    return path


# label-key options for xyz/ASE input, the same on every verb that reads labels
ENERGY_KEY = typer.Option(None, "--energy-key", help="field holding the energy in xyz/ASE input (e.g. REF_energy)")
FORCES_KEY = typer.Option(None, "--forces-key", help="field holding the forces in xyz/ASE input (e.g. REF_forces)")
HESSIAN_KEY = typer.Option(None, "--hessian-key", help="field holding the flattened Hessian (e.g. REF_hessian)")


OUTLIERS_HELP = ("keep labels outside the plausibility bounds (|E−Σref|/N 100 eV, |F| 1e4 eV/Å, |H_ij| 1e5 eV/Å²; "
                 "horm.data.plausibility); NaN/inf and |E|/N > 1e7 eV never pass")


def label_keys(energy_key, forces_key, hessian_key):
    """The three option values as a :class:`horm.data.formats.LabelKeys`."""
    from horm.data.formats import LabelKeys

    return LabelKeys(energy_key, forces_key, hessian_key)


def ts_settings_file(path: Path | None) -> dict:
    """The mapping in a ``--settings`` YAML of TS settings (sections path, tsopt, irc, bond_scales); {} for None."""
    if path is None:
        return {}
    import yaml

    if not path.is_file():
        raise UsageError(f"--settings {path}: no such file")
    try:
        d = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"--settings {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(d, dict):
        raise UsageError(f"{path}: expected a mapping with keys path, tsopt, irc, bond_scales")
    return d
