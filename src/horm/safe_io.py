"""File-system guards shared by every reader and writer: one place, not one copy per format.

* **Inputs** (:func:`read_input_bytes`, :func:`read_input_text`, :func:`check_input_file`): a
  regular file only, at most :data:`MAX_INPUT_BYTES`. A FIFO, ``/dev/zero`` (or a symlink to
  it), any other device, a folder or a symlink loop is one :class:`~horm.errors.DataError`
  line, before a byte is read: ``read()`` on ``/dev/zero`` never ends, and on a FIFO it waits
  for a writer. The file is opened with ``O_NONBLOCK`` so that opening a FIFO does not block.
* **Folder walks** (:func:`list_files`): the entries of one folder with the wanted suffixes
  that are regular files; a symlink loop, a dangling link or a device is skipped, with the
  reason, never followed.
* **Free space** (:func:`check_free_space`, :func:`disk_full`): a write whose size is known is
  refused before it starts when the file system has less room; after a failed write,
  :func:`disk_full` says whether a full disk is the likely cause (LMDB reports a short write
  as "Input/output error").
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path
from typing import Iterable

from horm.errors import DataError

MAX_INPUT_BYTES = 1 << 30  # 1 GiB: the largest geometry/settings file read into memory
LOW_SPACE_BYTES = 1 << 20  # below 1 MiB free, a failed write is taken to be a full disk


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _refuse(src: str, st: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise DataError(src, f"{_kind(st.st_mode)}, not a regular file; refusing to read it")
    if st.st_size > limit:
        raise DataError(src, f"{st.st_size} bytes, more than the {_mib(limit)} input limit")


def _mib(n: int) -> str:
    return f"{n / (1 << 30):g} GiB" if n >= 1 << 30 else f"{n / (1 << 20):g} MiB"


def _os_problem(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symlink loop"
    if exc.errno == errno.ENOENT:
        return "no such file (or a dangling symlink)"
    return f"cannot read ({exc.strerror or exc})"


def check_input_file(path: str | os.PathLike, limit: int | None = None) -> Path:
    """``path`` if it is a regular file of at most ``limit`` bytes (symlinks followed), else a
    DataError; for readers that hand the path to a library (ASE, SQLite)."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise DataError(str(path), _os_problem(exc)) from None
    _refuse(str(path), st, MAX_INPUT_BYTES if limit is None else limit)
    return path


def read_input_bytes(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (default :data:`MAX_INPUT_BYTES`);
    anything else is a DataError naming the file, raised before reading."""
    src = str(path)
    limit = MAX_INPUT_BYTES if limit is None else limit
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise DataError(src, _os_problem(exc)) from None
    try:
        _refuse(src, os.fstat(fd), limit)
        parts, total = [], 0
        while True:  # a file that grows while it is read is still capped
            b = os.read(fd, min(1 << 24, limit + 1 - total))
            if not b:
                break
            parts.append(b)
            total += len(b)
            if total > limit:
                raise DataError(src, f"more than the {_mib(limit)} input limit")
        return b"".join(parts)
    except OSError as exc:
        raise DataError(src, _os_problem(exc)) from None
    finally:
        os.close(fd)


def read_input_text(path: str | os.PathLike, limit: int | None = None) -> str:
    """:func:`read_input_bytes` decoded as UTF-8; a binary file is one DataError line."""
    data = read_input_bytes(path, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(str(path), f"not a text file (byte {exc.start} is not UTF-8)") from None


def list_files(folder: str | os.PathLike, suffixes: Iterable[str]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(regular files, skipped entries with the reason) among the entries of ``folder`` whose
    suffix (case-insensitive) is one of ``suffixes``, both sorted by name. One level only, and a
    symlink is only followed to see what it points at: a loop or a dangling link is skipped."""
    want = tuple(s.lower() for s in suffixes)
    files, skipped = [], []
    for p in sorted(Path(folder).iterdir()):
        if p.suffix.lower() not in want:
            continue
        try:
            st = os.stat(p)
        except OSError as exc:
            skipped.append((p, _os_problem(exc)))
            continue
        if stat.S_ISREG(st.st_mode):
            files.append(p)
        else:
            skipped.append((p, f"{_kind(st.st_mode)}, not a regular file"))
    return files, skipped


# --- free space --------------------------------------------------------------------------------

def free_bytes(path: str | os.PathLike) -> int | None:
    """Bytes free for this user on the file system that holds ``path`` (or its nearest existing
    parent); None when the file system does not say."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return int(shutil.disk_usage(p).free)
    except OSError:
        return None


def check_free_space(path: str | os.PathLike, needed: int, what: str = "this write") -> None:
    """A DataError naming ``path`` when its file system has fewer than ``needed`` bytes free."""
    free = free_bytes(path)
    if free is not None and free < needed:
        raise DataError(str(path), f"no space left on device: {what} needs about {needed} bytes, "
                                   f"{free} are free; nothing was written")


def disk_full(path: str | os.PathLike, exc: BaseException | None = None, needed: int = 0) -> bool:
    """Whether a failed write to ``path`` is most likely a full disk: ``exc`` is ENOSPC/EDQUOT,
    or the file system has less than ``max(needed, 1 MiB)`` free."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if exc is not None and "no space left" in str(exc).lower():
        return True
    free = free_bytes(path)
    return free is not None and free < max(needed, LOW_SPACE_BYTES)


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically: a fresh temporary file in the same folder (created
    with ``O_EXCL``, never a planted symlink), fsync'd and renamed over ``path``. Free space is
    checked first; a full disk is one DataError line, the temporary file is removed and any
    previous ``path`` is left intact."""
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = data.encode() if isinstance(data, str) else data
    check_free_space(path.parent, len(data), f"writing {path.name}")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o644)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and disk_full(path.parent, exc, len(data)):
            raise DataError(str(path), f"no space left on device writing {len(data)} bytes; nothing was "
                                       f"written, a previous {path.name} is intact") from None
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    """``obj`` as indented JSON, written by :func:`write_atomic` (numpy scalars and arrays as numbers
    and lists)."""
    import json

    return write_atomic(path, json.dumps(obj, indent=1, default=_json_default))


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-able: {type(o).__name__}")
