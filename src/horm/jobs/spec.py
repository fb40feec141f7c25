"""What the job runner is given and what it hands back.

* :class:`Job`: how a worker gets its heavy object (``load()``, once per worker) and what
  it does with one task (``task(obj, payload) -> value``). Both must be picklable
  (module-level functions, or ``functools.partial`` of one) so that worker processes and
  Ray actors can rebuild them.
* :class:`JobOptions`: the backend and its limits, chosen by options; the calling code
  never changes with them.
* :class:`Outcome`: one finished task: a value, or a failure of kind ``timeout`` (over the
  per-task limit; its worker was replaced), ``crash`` (the worker died), ``load`` (the
  worker could not load its object) or ``error`` (the task raised).
* :class:`Sink`: where outcomes land, durably, as they finish; it also says which keys a
  rerun skips.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from horm.errors import UsageError

FAILURE_KINDS = ("timeout", "crash", "load", "error")


class TaskTimeout(BaseException):
    """A task ran past its limit (a BaseException, so task code's ``except Exception``
    cannot swallow it)."""


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name."""
    msg = str(exc).strip().splitlines()
    return msg[0] if msg else type(exc).__name__


@dataclass(frozen=True)
class Job:
    load: Callable[[], Any]  # builds the heavy object (engine, potential), once per worker
    task: Callable[[Any, Any], Any]  # (object, payload) -> value, one keyed task


@dataclass(frozen=True)
class JobOptions:
    workers: int = 1  # parallel workers: processes on this machine (capped: horm.runtime.cap_workers), or Ray actors
    ray: str | None = None  # None: this machine; "local": start a local Ray; else a Ray cluster address
    timeout: float | None = None  # seconds per task; a slower one fails as "timeout", its worker is replaced
    threads: int = 1  # threads per worker (torch, BLAS, OpenMP); 1 suits molecule-sized tasks
    batch: int | None = None  # keys per Ray task (None: automatic, up to 16)
    isolate: bool = False  # a single worker still runs in its own process (hard timeouts)
    progress: bool = True  # a rich progress bar with the ETA

    def __post_init__(self):
        if self.workers < 1:
            raise UsageError(f"workers must be >= 1, got {self.workers}")
        if self.timeout is not None and not self.timeout > 0:
            raise UsageError(f"timeout must be > 0 seconds, got {self.timeout}")
        if self.threads < 1:
            raise UsageError(f"threads must be >= 1, got {self.threads}")
        if self.batch is not None and self.batch < 1:
            raise UsageError(f"batch must be >= 1, got {self.batch}")
        if self.ray is not None and not str(self.ray).strip():
            raise UsageError("ray must be 'local' or a cluster address, got an empty string")
        if self.ray in (None, "local"):  # on this machine: at most one worker per core, unless raised
            from horm.runtime import cap_workers

            workers, warning = cap_workers(self.workers)
            if warning:
                print(f"warning: {warning}", file=sys.stderr, flush=True)
                object.__setattr__(self, "workers", workers)

    @property
    def backend(self) -> str:
        """``serial`` (in this process), ``process`` (worker processes) or ``ray``."""
        if self.ray:
            return "ray"
        return "process" if self.workers > 1 or self.isolate else "serial"


@dataclass
class Outcome:
    key: str
    value: Any = None  # the task's return value (None on failure)
    kind: str | None = None  # None: success; else one of FAILURE_KINDS
    message: str = ""  # one line, for a failure
    seconds: float = 0.0  # wall time of the task (inside the worker where it ran)
    cpu_seconds: float = 0.0  # CPU time of the worker process during the task (all its threads)

    @property
    def ok(self) -> bool:
        return self.kind is None


class Sink(Protocol):
    def skip_reason(self, key: str) -> str | None:
        """Why a rerun skips ``key`` (e.g. "stored"), or None to run it."""

    def put(self, outcomes: list[Outcome]) -> None:
        """Record finished tasks durably (called as they finish, in the parent only)."""


@dataclass
class JobStats:
    backend: str = "serial"
    workers: int = 1
    total: int = 0  # keys seen
    ok: int = 0  # tasks that returned a value
    failed: dict[str, int] = field(default_factory=dict)  # failure kind -> count
    skipped: dict[str, int] = field(default_factory=dict)  # skip reason -> count
    seconds: float = 0.0  # wall time after start-up
    startup_seconds: float = 0.0  # workers / Ray start-up
    task_seconds: float = 0.0  # summed task time inside workers
    task_cpu_seconds: float = 0.0  # summed worker CPU time of the tasks (wall > CPU: cores busy elsewhere)

    @property
    def n_failed(self) -> int:
        return sum(self.failed.values())

    @property
    def computed(self) -> int:
        return self.ok + self.n_failed
