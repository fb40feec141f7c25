"""The compute options every computing verb shares: ``--threads``, ``--device``, ``--dtype`` (see :mod:`horm.runtime`)."""

from __future__ import annotations

from typing import Optional

import typer

THREADS_HELP = "intra-op threads per process (torch, BLAS, OpenMP); default: 1 below 50 atoms"


def threads_option() -> Optional[int]:
    return typer.Option(None, "--threads", min=1, help=THREADS_HELP)


def device_option(default: str = "cpu") -> str:
    return typer.Option(default, "--device", help="cpu, cuda, cuda:N or auto (CUDA when present)")


def dtype_option(default: Optional[str] = "float64") -> Optional[str]:
    return typer.Option(default, "--dtype", help="float64 or float32 (a model's compute precision)")


def engine_device_option() -> str:
    return typer.Option("auto", "--device", help="dft: cpu, cuda or auto (GPU4PySCF when CUDA is there); xtb: CPU")


def engine_settings(engine: str, device: str, threads: Optional[int]) -> dict:
    """``--device`` and ``--threads`` as engine settings: dft's ``use_gpu`` and ``threads``; xtb runs on the CPU."""
    valid = ("auto", "cpu", "cuda")
    if device not in valid:
        raise typer.BadParameter(f"--device {device!r}: expected one of {', '.join(valid)}")
    if engine == "dft":
        return {"use_gpu": {"auto": None, "cpu": False, "cuda": True}[device], "threads": threads}
    if device == "cuda":
        raise typer.BadParameter(f"--device cuda: the {engine} engine runs on the CPU only")
    return {}
