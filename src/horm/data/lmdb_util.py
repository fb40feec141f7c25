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
