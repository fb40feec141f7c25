"""LMDB safety checks shared by the HORM reader and our store.

LMDB memory-maps the file. Reading a page past the end of a truncated file does not
raise: the process dies with SIGBUS. So before any read we compare the file's size
with the last page LMDB's meta page says is in use.
"""

from __future__ import annotations

import os
from pathlib import Path

import lmdb

from horm.errors import DataError

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


# LMDB refuses to open one file twice in a process; share environments by real path.
_ENVS: dict[str, list] = {}  # realpath -> [env, readonly, refcount]
MAP_SIZE = 1 << 40  # 1 TiB of address space; the file only grows as data is written


def acquire_env(path: str | os.PathLike, readonly: bool | None = True) -> lmdb.Environment:
    """Open (or share) the LMDB environment of a single-file database.

    Read-only opens use ``lock=False`` so that files on read-only media work; a
    writable open takes LMDB's lock file. Checks truncation before returning.
    """
    path = Path(path)
    key = os.path.realpath(path)
    entry = _ENVS.get(key)
    if entry is not None:
        if entry[1] and readonly is False:
            raise DataError(str(path), "already open read-only in this process; close it before writing")
        entry[2] += 1
        return entry[0]
    readonly = True if readonly is None else readonly
    check_min_size(path)
    try:
        env = lmdb.open(str(path), subdir=False, readonly=readonly, lock=not readonly,
                        map_size=MAP_SIZE, readahead=False, meminit=False, max_readers=256)
    except lmdb.Error as exc:
        raise DataError(str(path), f"cannot open as LMDB ({exc})") from None
    try:
        check_not_truncated(env, path)
    except DataError:
        env.close()
        raise
    _ENVS[key] = [env, readonly, 1]
    return env


def release_env(path: str | os.PathLike) -> None:
    key = os.path.realpath(path)
    entry = _ENVS.get(key)
    if entry is None:
        return
    entry[2] -= 1
    if entry[2] <= 0:
        entry[0].close()
        del _ENVS[key]


def is_open(path: str | os.PathLike) -> bool:
    return os.path.realpath(path) in _ENVS
