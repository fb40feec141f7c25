"""The worker side: die with the parent, one thread, load once, run tasks one at a time.

A local worker is a fresh interpreter (``python -c 'from horm.jobs.worker import main;
main()' FD PPID``, no ``multiprocessing``, hence no resource tracker or fork server to
outlive anyone). It talks to its parent over one socket (a
``multiprocessing.connection.Connection``):

    worker → parent  ("ready", pid, load_error | None)
    parent → worker  (key, payload) ... or None to stop
    worker → parent  Outcome, one per task

Dying with the parent: on Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (via ctypes) makes
the kernel kill the worker when the parent dies, even by SIGKILL; a daemon thread that
checks ``os.getppid()`` twice a second is the fallback elsewhere, and a worker waiting for
a task also ends at EOF on its socket.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any

from horm.jobs.spec import Job, Outcome, TaskTimeout, one_line

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def die_with_parent(ppid: int) -> None:
    """Make this process end when the process ``ppid`` (its parent) ends."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != ppid:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != ppid:
                os._exit(1)

    threading.Thread(target=watch, name="horm-parent-watch", daemon=True).start()


def own_session() -> None:
    """Move this process into a session of its own (Ray actors; local workers start in one).

    The terminal's Ctrl-C then reaches only the parent, which stops its workers in order,
    and under Linux's scheduler autogroups each worker gets its own CPU share instead of a
    split of its parent's (Ray starts its workers in the driver's session: two workers then
    ran no faster than one on a shared machine). A process-group leader cannot ``setsid``,
    so it first joins its parent's group.
    """
    try:
        if os.getpgid(0) == os.getpid():
            os.setpgid(0, os.getpgid(os.getppid()))
        os.setsid()
    except OSError:  # not allowed here: stay where we are
        pass


def limit_threads(n: int) -> None:
    """n threads for OpenMP, BLAS (threadpoolctl) and torch in this process."""
    for var in THREAD_VARS:
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        pass
    if "torch" in sys.modules:  # else torch reads OMP_NUM_THREADS when it is imported
        sys.modules["torch"].set_num_threads(n)


@contextmanager
def time_limit(seconds: float | None):
    """Raise TaskTimeout after ``seconds`` (SIGALRM; a no-op outside a main thread)."""
    if not seconds:
        yield
        return

    def handler(signum, frame):
        raise TaskTimeout(f"timeout after {seconds:g} s")

    try:
        old = signal.signal(signal.SIGALRM, handler)
    except ValueError:  # not the main thread: the caller's hard limit applies
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def load(job: Job) -> tuple[Any, str | None]:
    """(object, None), or (None, one-line reason) when loading fails."""
    try:
        return job.load(), None
    except Exception as exc:  # noqa: BLE001 - reported on each task instead
        return None, f"cannot load the worker's object: {type(exc).__name__}: {one_line(exc)}"


def run_task(job: Job, obj: Any, load_error: str | None, key: str, payload: Any,
             timeout: float | None = None) -> Outcome:
    """One task; every failure becomes an Outcome, never a raise."""
    t0, c0 = time.perf_counter(), time.process_time()
    if load_error is not None:
        return Outcome(key, kind="load", message=load_error)
    try:
        with time_limit(timeout):
            value = job.task(obj, payload)
        return Outcome(key, value, seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0)
    except TaskTimeout as exc:
        return Outcome(key, kind="timeout", message=one_line(exc), seconds=time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - one bad task must not end the run
        return Outcome(key, kind="error", message=f"{type(exc).__name__}: {one_line(exc)}",
                       seconds=time.perf_counter() - t0)


def main() -> None:
    """Entry point of a local worker process (argv: socket fd, parent pid, threads)."""
    import socket
    from multiprocessing.connection import Connection

    fd, ppid, threads = (int(x) for x in sys.argv[1:4])
    die_with_parent(ppid)
    limit_threads(threads)
    conn = Connection(socket.socket(fileno=fd).detach())
    job = conn.recv()
    obj, load_error = load(job)
    conn.send(("ready", os.getpid(), load_error))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        key, payload = msg
        out = run_task(job, obj, load_error, key, payload)
        try:
            conn.send(out)
        except Exception as exc:  # noqa: BLE001 - e.g. a value that cannot be pickled
            conn.send(Outcome(key, kind="error", message=f"result not sendable: {one_line(exc)}",
                              seconds=out.seconds))


if __name__ == "__main__":  # pragma: no cover
    main()
