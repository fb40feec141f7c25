"""LMDB safety checks shared by the HORM reader and our store.

LMDB memory-maps the file. Reading a page past the end of a truncated file does not
raise: the process dies with SIGBUS. So before any read we compare the file's size
with the last page LMDB's meta page says is in use.
"""

from __future__ import annotations

import os
import stat
import struct
from contextlib import contextmanager
from pathlib import Path

import lmdb

from horm.errors import DataError
from horm.safe_io import disk_full

MIN_LMDB_BYTES = 2 * 4096  # two meta pages


def check_not_truncated(env: lmdb.Environment, path: str | os.PathLike) -> None:
    """Raise DataError if the file is shorter than the pages LMDB's meta page references."""
    path = Path(path)
    try:
        info = env.info()
        psize = env.stat()["psize"]
    except lmdb.Error as exc:
        raise DataError(str(path), f"corrupt or truncated LMDB ({exc})") from None
    need = (int(info["last_pgno"]) + 1) * int(psize)
    have = path.stat().st_size
    if have < need:
        raise DataError(str(path), f"truncated LMDB: file has {have} bytes, its pages need {need}")


def check_min_size(path: str | os.PathLike) -> None:
    path = Path(path)
    size = path.stat().st_size
    if size < MIN_LMDB_BYTES:
        raise DataError(str(path), f"truncated or not an LMDB file ({size} bytes)")


# LMDB refuses to open one file twice in a process; share environments by real path. An
# environment must not be used across fork() (DataLoader workers): entries carry the pid that
# opened them, and a forked child opens its own (:func:`_forget_inherited`).
_ENVS: dict[str, list] = {}  # realpath -> [env, readonly, refcount, pid]
MAP_SIZE = 1 << 40  # 1 TiB of address space; the file only grows as data is written
_MAP_FLOOR = 1 << 26  # smallest map a writable open retries with (64 MiB, and at least 2x the file)


def check_lock_file(path: str | os.PathLike) -> None:
    """Refuse a writable open when LMDB's own lock file (``<path>-lock``, which LMDB opens,
    follows and resizes) is a symlink, a hard link or not a regular file."""
    lp = Path(str(path) + "-lock")
    try:
        st = os.lstat(lp)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a plain file"
        raise DataError(str(lp), f"LMDB's lock file is {what}; refusing to open {path} for writing (remove it)")


class MapError(DataError):
    """The LMDB file could not be memory-mapped (address space or memory): not a verdict on the file."""


def _map_failure(exc: BaseException) -> bool:
    return isinstance(exc, lmdb.MemoryError) or "cannot allocate memory" in str(exc).lower()


def open_lmdb(path: str | os.PathLike, readonly: bool, lock: bool | None = None) -> lmdb.Environment:
    """``lmdb.open`` of a single file with a 1 TiB map; when the address space is limited
    (``ulimit -v``), retried with smaller maps (read-only: the file's size; writable: halved down
    to 2x the file) and, failing that, a DataError that says so, never "not an LMDB"."""
    path = Path(path)
    lock = (not readonly) if lock is None else lock
    if not readonly:
        check_lock_file(path)
    size = path.stat().st_size if path.exists() else 0
    tries = [MAP_SIZE]
    if readonly:
        tries.append(max(size, MIN_LMDB_BYTES))
    else:
        floor = max(_MAP_FLOOR, 2 * size)
        while tries[-1] // 4 >= floor:
            tries.append(tries[-1] // 4)
    for k, map_size in enumerate(tries):
        try:
            return lmdb.open(str(path), subdir=False, readonly=readonly, lock=lock, map_size=map_size,
                             readahead=False, meminit=False, max_readers=256)
        except lmdb.Error as exc:
            if not _map_failure(exc):
                full = not readonly and disk_full(path, exc)
                raise DataError(str(path), f"{'no space left on device' if full else 'cannot open as LMDB'} ({exc})") from None
            if k == len(tries) - 1:
                raise MapError(str(path), f"cannot map the LMDB file: not enough address space for "
                                           f"{map_size} bytes (ulimit -v?) ({exc})") from None
    raise AssertionError("unreachable")


def _forget_inherited(key: str, entry: list) -> None:
    """In a forked child: close this process's copy of a read-only environment the parent opened
    (py-lmdb refuses a second open of the path; closing a lock-free read-only copy touches nothing
    the parent uses). A writable one holds LMDB locks: the child must not touch it."""
    if not entry[1]:
        raise DataError(key, "opened for writing by the parent process; a forked worker can only read files "
                             "the parent opened read-only")
    del _ENVS[key]
    entry[0].close()


def acquire_env(path: str | os.PathLike, readonly: bool | None = True) -> lmdb.Environment:
    """Open (or share) the LMDB environment of a single-file database.

    Read-only opens use ``lock=False`` so that files on read-only media work; a
    writable open takes LMDB's lock file. Checks truncation before returning.
    """
    path = Path(path)
    key = os.path.realpath(path)
    entry = _ENVS.get(key)
    if entry is not None and entry[3] != os.getpid():
        _forget_inherited(key, entry)
        entry = None
    if entry is not None:
        if entry[1] and readonly is False:
            raise DataError(str(path), "already open read-only in this process; close it before writing")
        entry[2] += 1
        return entry[0]
    readonly = True if readonly is None else readonly
    check_min_size(path)
    env = open_lmdb(path, readonly)
    try:
        check_not_truncated(env, path)
    except DataError:
        env.close()
        raise
    _ENVS[key] = [env, readonly, 1, os.getpid()]
    return env


def release_env(path: str | os.PathLike) -> None:
    key = os.path.realpath(path)
    entry = _ENVS.get(key)
    if entry is None or entry[3] != os.getpid():
        return
    entry[2] -= 1
    if entry[2] <= 0:
        entry[0].close()
        del _ENVS[key]


def is_open(path: str | os.PathLike) -> bool:
    entry = _ENVS.get(os.path.realpath(path))
    return entry is not None and entry[3] == os.getpid()


@contextmanager
def lmdb_errors(path: str | os.PathLike, where: str | None = None, write: str | None = None):
    """Turn LMDB's own errors inside the block into one DataError line naming the file.

    ``write``: what the block writes (one transaction). A failed write then says whether the map
    or the disk is full (LMDB reports a short write as "Input/output error") and that the
    transaction rolled back: the store is as it was before it."""
    try:
        yield
    except lmdb.Error as exc:
        detail = f"{type(exc).__name__}: {exc}"
        if write is not None and (isinstance(exc, lmdb.MapFullError) or _map_failure(exc)):
            raise DataError(str(path), f"the LMDB map is full or cannot grow ({detail}); {write} was rolled "
                                       f"back, the store is as it was before", where) from None
        if write is not None and disk_full(path, exc):
            raise DataError(str(path), f"no space left on device ({detail}); {write} was rolled back, the "
                                       f"store is as it was before", where) from None
        raise DataError(str(path), f"corrupt or truncated LMDB ({detail})", where) from None


def has_record(path: str | os.PathLike, key: bytes) -> bool:
    """True if ``path`` is an LMDB file holding ``key`` (or one whose node for ``key`` is damaged).
    Not an LMDB file: False. A map failure (:class:`MapError`) is raised: it is no verdict."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        env = acquire_env(p, readonly=None)
    except MapError:
        raise
    except DataError:
        return False
    try:
        check_value_extent(p, key)
    except DataError:
        release_env(p)
        return True
    try:
        with env.begin() as txn:
            return txn.get(key) is not None
    except lmdb.Error:
        return False
    finally:
        release_env(p)


def remove_lmdb(path: str | os.PathLike) -> None:
    """Delete a single-file LMDB and its ``-lock`` file (what a failed run created)."""
    release_env(path)
    Path(path).unlink(missing_ok=True)
    Path(str(path) + "-lock").unlink(missing_ok=True)


# --- a read-only look at LMDB's own pages, through pread, never through the memory map ---
# py-lmdb touches every page of a value it returns. A damaged size in a leaf node would
# make it touch pages past the end of the file (SIGBUS), so before a single-key read we
# find the key's node ourselves and check that its value lies inside the file.
_P_BRANCH, _P_LEAF, _F_BIGDATA = 0x01, 0x02, 0x01
_MAX_DEPTH = 32


def _u(fmt: str, b: bytes, off: int) -> int:
    return struct.unpack_from(fmt, b, off)[0]


def _meta(fd: int) -> tuple[int, int, int]:
    """(page size, main-DB root page or -1, last page) of the newest valid meta page."""
    best = None
    head = os.pread(fd, 160, 0)
    psize = _u("<I", head, 40) if len(head) >= 160 else 0
    if psize not in (4096, 8192, 16384, 32768, 65536):
        raise ValueError(f"page size {psize}")
    for page in (0, 1):
        b = os.pread(fd, 160, page * psize)
        if len(b) < 152 or _u("<I", b, 16) != 0xBEEFC0DE:
            continue
        root, last, txnid = _u("<Q", b, 128), _u("<Q", b, 136), _u("<Q", b, 144)
        if best is None or txnid > best[0]:
            best = (txnid, root, last)
    if best is None:
        raise ValueError("no valid meta page")
    root = -1 if best[1] == 0xFFFFFFFFFFFFFFFF else best[1]
    return psize, root, best[2]


def _nodes(page: bytes, psize: int):
    lower = _u("<H", page, 12)
    if not 16 <= lower <= psize or lower % 2:
        raise ValueError("bad node count")
    for i in range((lower - 16) // 2):
        off = _u("<H", page, 16 + 2 * i)
        if not lower <= off <= psize - 8:
            raise ValueError("bad node offset")
        lo, hi, flags, ksize = struct.unpack_from("<HHHH", page, off)
        if off + 8 + ksize > psize:
            raise ValueError("key past the page")
        yield off, lo | (hi << 16), flags, page[off + 8: off + 8 + ksize]


def _check_node(page: bytes, pgno: int, off: int, dsize: int, flags: int, klen: int,
                psize: int, last: int, size: int) -> None:
    if flags & _F_BIGDATA:
        ov = _u("<Q", page, off + 8 + klen)
        if ov > last or ov * psize + 16 + dsize > size:
            raise ValueError(f"value of {dsize} bytes on page {ov} past the end")
    elif off + 8 + klen + dsize > psize:
        raise ValueError(f"value of {dsize} bytes past page {pgno}")


def _walk_values(fd: int, lo: bytes, hi: bytes | None):
    """(key, value size) of every key in ``[lo, hi)``, each value checked to lie inside the file;
    only branch and leaf pages are read (pread)."""
    size = os.fstat(fd).st_size
    psize, root, last = _meta(fd)
    stack, seen = ([(root, 0)] if root >= 0 else []), set()
    while stack:
        pgno, depth = stack.pop()
        if pgno > last or (pgno + 1) * psize > size or depth > _MAX_DEPTH or pgno in seen:
            raise ValueError(f"page {pgno} past the end, too deep or visited twice")
        seen.add(pgno)
        page = os.pread(fd, psize, pgno * psize)
        flags = _u("<H", page, 10)
        nodes = list(_nodes(page, psize))
        if flags & _P_BRANCH:
            for i, (_, lo_hi, fl, k) in enumerate(nodes):
                nxt = nodes[i + 1][3] if i + 1 < len(nodes) else None
                if (i == 0 or hi is None or k < hi) and (nxt is None or nxt > lo):
                    stack.append((lo_hi | (fl << 32), depth + 1))
        elif flags & _P_LEAF:
            for off, dsize, fl, k in nodes:
                if k >= lo and (hi is None or k < hi):
                    _check_node(page, pgno, off, dsize, fl, len(k), psize, last, size)
                    yield k, dsize
        else:
            raise ValueError(f"page {pgno} is neither branch nor leaf")


def _read_pages(path: Path, where: str | None, fn):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise DataError(str(path), f"cannot read ({exc.strerror})") from None
    try:
        return fn(fd)
    except (ValueError, struct.error) as exc:
        raise DataError(str(path), f"damaged LMDB page structure ({exc})", where) from None
    finally:
        os.close(fd)


def check_value_extents(path: str | os.PathLike, lo: bytes, hi: bytes | None = None,
                        where: str | None = None) -> None:
    """Raise DataError unless the value of every key in ``[lo, hi)`` lies inside the file.

    Reads only the branch and leaf pages on the way to those keys (with pread).
    """
    _read_pages(Path(path), where, lambda fd: all(True for _ in _walk_values(fd, lo, hi)))


def value_sizes(path: str | os.PathLike) -> list[tuple[bytes, int]]:
    """(key, value size in bytes) of every record, from the leaf pages alone (pread): no value page
    is read, so this costs a few MB of I/O per million records (the values may be gigabytes)."""
    return _read_pages(Path(path), None, lambda fd: list(_walk_values(fd, b"", None)))


def check_value_extent(path: str | os.PathLike, key: bytes, where: str | None = None) -> None:
    """:func:`check_value_extents` for one key."""
    check_value_extents(path, key, key + b"\x00", where)


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key above every key that starts with ``prefix`` (prefix's last byte < 0xff)."""
    return prefix[:-1] + bytes([prefix[-1] + 1])
