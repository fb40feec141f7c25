"""Where and how a model or engine computes: threads, device and dtype, resolved the same way everywhere.

Every verb that computes (``ts run``, ``ts benchmark``, ``evaluate``, ``label``, ``sample``) and
the calculator take the same three settings:

- ``threads``: intra-op threads of one process (torch, the BLAS under NumPy/SciPy, and OpenMP,
  which tblite uses). ``None`` means *auto*: **one thread for molecules under**
  :data:`SMALL_MOLECULE_ATOMS` **atoms**, the libraries' own defaults otherwise. The ``dft``
  engine has its own ``threads`` setting (PySCF's integral kernels do use several cores) and
  keeps control of its threads (:func:`threads_for`); ``--threads`` is passed to it. On small
  molecules the work per parallel region is tiny, and OpenMP threads that spin-wait for a core
  that is busy elsewhere cost far more than they give (``benchmarks/threads.py`` measures it).
  Parallel jobs use one worker per core (:func:`default_workers`), each with one thread.
- ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when present). Asking for
  CUDA on a build or machine without it is one clear :class:`~horm.errors.HormError` line.
- ``dtype``: ``"float32"``, ``"float64"``, a ``torch.dtype``, or ``None`` (keep the model's).

:func:`thread_limit` applies a thread count for the duration of one computation and restores the
previous counts afterwards, so a calculator in a larger program does not change it for good.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

from horm.errors import HormError, UsageError

SMALL_MOLECULE_ATOMS = 50
"""Below this many atoms, auto threads = 1 per process."""

DTYPES = ("float32", "float64")


def cpu_count() -> int:
    """Cores this process may use (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


MAX_WORKERS_ENV = "HORM_MAX_WORKERS"
"""Environment variable that raises (or lowers) the cap on local worker processes."""


def max_workers() -> int:
    """The most local worker processes a verb starts: the cores here, or ``$HORM_MAX_WORKERS``."""
    raw = os.environ.get(MAX_WORKERS_ENV, "").strip()
    if not raw:
        return cpu_count()
    if not (raw.isascii() and raw.isdigit() and int(raw) >= 1):
        raise UsageError(f"{MAX_WORKERS_ENV}={raw!r}: expected a positive integer (the most local workers)")
    return int(raw)


def cap_workers(workers: int) -> tuple[int, str | None]:
    """(``workers`` capped at :func:`max_workers`, the warning to show when it was capped, else None).

    More worker processes than cores only contend for them (each holds its own engine or model);
    ``HORM_MAX_WORKERS=N`` raises the cap on purpose."""
    if workers <= 1:
        return workers, None
    cap = max_workers()
    if workers <= cap:
        return workers, None
    why = f"{MAX_WORKERS_ENV}" if os.environ.get(MAX_WORKERS_ENV, "").strip() else "the cores this process may use"
    return cap, (f"--workers {workers} capped at {cap} ({why}); set {MAX_WORKERS_ENV}={workers} to run "
                 f"{workers} local workers anyway")


def default_workers(n_jobs: int | None = None) -> int:
    """One worker per core, never more workers than jobs."""
    n = cpu_count()
    return max(1, min(n, n_jobs)) if n_jobs is not None else n


def check_threads(threads: int | None) -> int | None:
    """``None`` (auto) or a positive int; ValueError otherwise."""
    if threads is None:
        return None
    if isinstance(threads, bool) or int(threads) != threads or int(threads) < 1:
        raise UsageError(f"threads={threads!r}: expected a positive integer, or None for auto "
                         f"(1 below {SMALL_MOLECULE_ATOMS} atoms)")
    return int(threads)


def auto_threads(threads: int | None, n_atoms: int | None) -> int | None:
    """The thread count to apply: ``threads`` if given; else 1 for a small molecule, else None (library default)."""
    threads = check_threads(threads)
    if threads is not None:
        return threads
    if n_atoms is not None and n_atoms < SMALL_MOLECULE_ATOMS:
        return 1
    return None


def threads_for(computer: Any, threads: int | None, n_atoms: int | None) -> int | None:
    """:func:`auto_threads` for a model or engine, except one with its own ``threads`` setting
    (the ``dft`` engine: integral kernels that do use several cores), which keeps control (None)."""
    if hasattr(computer, "threads"):
        return None
    return auto_threads(threads, n_atoms)


_CONTROLLER: Any = None
_CONTROLLER_LIBS = -1


def _controller():
    """A cached threadpoolctl controller; rebuilt when new shared libraries were loaded (e.g. tblite)."""
    global _CONTROLLER, _CONTROLLER_LIBS
    import sys

    from threadpoolctl import ThreadpoolController

    n_mods = len(sys.modules)
    if _CONTROLLER is None or n_mods != _CONTROLLER_LIBS:
        _CONTROLLER, _CONTROLLER_LIBS = ThreadpoolController(), n_mods
    return _CONTROLLER


@contextlib.contextmanager
def thread_limit(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads in torch, BLAS and OpenMP; None: change nothing.

    torch is limited only when it is already loaded: importing it here (~0.7 s) would cost an
    engine-only worker (xTB) that never uses it more than its first few items.
    """
    if threads is None:
        yield
        return
    threads = check_threads(threads)
    import sys

    torch = sys.modules.get("torch")
    old = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        with _controller().limit(limits=threads):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(old)


def set_process_threads(threads: int | None) -> None:
    """For a worker process that runs one thing: set torch/BLAS/OpenMP threads for good (None: leave)."""
    threads = check_threads(threads)
    if threads is None:
        return
    os.environ["OMP_NUM_THREADS"] = str(threads)  # for OpenMP runtimes loaded later (tblite, PySCF)
    import torch

    torch.set_num_threads(threads)
    _controller().limit(limits=threads)


def resolve_dtype(dtype: Any):
    """``"float32"`` / ``"float64"`` / ``torch.float32`` / ``torch.float64`` / None -> torch.dtype or None."""
    if dtype is None:
        return None
    import torch

    if isinstance(dtype, torch.dtype):
        name = str(dtype).replace("torch.", "")
    else:
        name = str(dtype).strip().lower().replace("torch.", "")
        name = {"double": "float64", "float": "float32", "fp64": "float64", "fp32": "float32"}.get(name, name)
    if name not in DTYPES:
        raise UsageError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def resolve_device(device: Any = "cpu"):
    """``"cpu"`` / ``"cuda"`` / ``"cuda:N"`` / ``"auto"`` / torch.device -> torch.device, or one HormError line."""
    import torch

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UsageError(f"device {device!r}: expected cpu, cuda, cuda:N or auto ({exc})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "a CUDA build but no visible GPU"
            raise UsageError(f"device {str(device)!r}: torch {torch.__version__} is {build}; use device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"device {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif dev.type != "cpu":
        raise UsageError(f"device {device!r}: expected cpu, cuda, cuda:N or auto")
    return dev


def versions() -> dict[str, str]:
    """horm, Python, the platform and the installed versions of the packages results depend on."""
    import importlib.metadata as md
    import platform

    from horm._version import __version__

    out = {"horm": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("torch", "lightning", "numpy", "ase", "tblite", "sella", "pyscf"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
