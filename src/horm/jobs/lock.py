"""One runner per output: an exclusive ``fcntl.flock`` on ``<out>.lock``.

The lock file holds the PID of its holder. A second runner on the same output does not
wait: it raises :class:`OutputLocked` at once, naming that PID. The kernel drops the lock
when its holder exits, however it exits (SIGKILL included), so a stale lock file is
harmless and is never deleted (deleting it would let two runners lock two different files).

The lock file is never followed and never a file horm did not make: it is created with
``O_CREAT | O_EXCL | O_NOFOLLOW``; an existing one is opened with ``O_NOFOLLOW`` and reused
only when it is a regular file with one link, at most 64 bytes, holding nothing but a PID (a
stale lock). A symlink (``out.hstore.lock -> ../victim.txt``), a hard link or any other file
under that name is refused in one line, and left as it is.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from horm.errors import DataError, HormError


class OutputLocked(HormError):
    """Another live runner writes the same output."""


def lock_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".lock")


_HELD: set[Path] = set()  # locks this process holds (a nested output_lock on one is a no-op)


def _open_lock(path: Path) -> int:
    """A file descriptor of the lock file ``path``, made by us or a stale horm lock; else DataError."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(3):  # a stale lock removed by hand between the two opens: try again
        try:
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise DataError(str(path), "the lock file is a symlink; a lock is never followed "
                                           "(remove the link)") from None
            raise DataError(str(path), f"cannot open the lock file ({exc.strerror or exc})") from None
        st = os.fstat(fd)
        head = os.pread(fd, 65, 0) if stat.S_ISREG(st.st_mode) else b""
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_size <= 64 and re.fullmatch(rb"\d*\s*", head):
            return fd
        os.close(fd)
        raise DataError(str(path), "exists and is not a horm lock file (a PID); refusing to use or change it "
                                   "(remove it, or choose another output)")
    raise DataError(str(path), "the lock file keeps disappearing; another process removes it")


@contextmanager
def output_lock(out: str | os.PathLike) -> Iterator[Path]:
    """Hold the lock of ``out`` for the duration of the block, or raise OutputLocked.

    Re-entrant within one process: a CLI verb can lock early (before loading an engine)
    and the library function it calls locks again without effect. The lock file's folder is
    resolved, the lock file itself never (see the module docstring).
    """
    lp = lock_path(out)
    lp.parent.mkdir(parents=True, exist_ok=True)
    path = lp.parent.resolve() / lp.name
    if path in _HELD:
        yield path
        return
    fd = _open_lock(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise OutputLocked(f"{out}: in use by another horm run (PID {holder}, lock {path}); "
                               f"wait for it or stop it") from None
        try:
            os.ftruncate(fd, 0)  # our own file, or a stale lock checked by _open_lock
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:  # a full disk: an empty lock file is a harmless stale one
            raise DataError(str(path), f"cannot write the lock file ({exc.strerror or exc})") from None
        _HELD.add(path)
        try:
            yield path
        finally:
            _HELD.discard(path)
    finally:
        os.close(fd)  # releases the lock


def launcher_lock(out: str | os.PathLike):
    """:func:`output_lock` in the process a user started; nothing in a rank that a launcher
    (Lightning DDP, torchrun) started by re-running the same command, which it holds for them
    (``LOCAL_RANK``, ``NODE_RANK`` or ``RANK`` set and not 0)."""
    from contextlib import nullcontext

    if any(os.environ.get(v, "0") not in ("", "0") for v in ("LOCAL_RANK", "NODE_RANK", "RANK")):
        return nullcontext()
    return output_lock(out)
