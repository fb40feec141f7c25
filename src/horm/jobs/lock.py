"""One runner per output: an exclusive ``fcntl.flock`` on ``<out>.lock``.

The lock file holds the PID of its holder. A second runner on the same output does not
wait: it raises :class:`OutputLocked` at once, naming that PID. The kernel drops the lock
when its holder exits, however it exits (SIGKILL included), so a stale lock file is
harmless and is never deleted (deleting it would let two runners lock two different files).
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from horm.errors import HormError


class OutputLocked(HormError):
    """Another live runner writes the same output."""


def lock_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".lock")


_HELD: set[Path] = set()  # locks this process holds (a nested output_lock on one is a no-op)


@contextmanager
def output_lock(out: str | os.PathLike) -> Iterator[Path]:
    """Hold the lock of ``out`` for the duration of the block, or raise OutputLocked.

    Re-entrant within one process: a CLI verb can lock early (before loading an engine)
    and the library function it calls locks again without effect.
    """
    path = lock_path(out).resolve()
    if path in _HELD:
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise OutputLocked(f"{out}: in use by another horm run (PID {holder}, lock {path}); "
                               f"wait for it or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD.add(path)
        try:
            yield path
        finally:
            _HELD.discard(path)
    finally:
        os.close(fd)  # releases the lock
