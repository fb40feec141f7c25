"""``horm data verify``: read every record of a horm store and report each damaged one.

The byte-level seals are :mod:`horm.data.integrity`'s; this module checks a whole store with
them and with its structure: every chunk decodes, chunk records lie within the count, each
``k:`` row points at the sample holding its key, the failures table matches its count, and each
``a:`` record holds its chunk's atom counts. Damage never raises: each damaged record is one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack
import numpy as np

from horm.data.store import HessianStore
from horm.errors import DataError


@dataclass
class VerifyReport:
    """What ``verify_store`` found: one line per damaged record."""

    path: str
    protected: bool
    n_samples: int = 0
    n_chunks: int = 0
    n_keys: int = 0
    n_failures: int = 0
    damaged: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damaged


def verify_store(path) -> VerifyReport:
    """Read every record of the store at ``path`` and check it. Damage inside the store
    never raises: each damaged record becomes one line of ``report.damaged``."""
    try:
        store = HessianStore.open(path)
    except DataError as exc:
        return VerifyReport(str(path), protected=False, damaged=[str(exc)])
    with store:
        rep = VerifyReport(str(path), protected=store.sealed, n_samples=len(store), n_chunks=store.n_chunks)
        keys_at: dict[str, int] = {}
        bad_ranges = []
        natoms: dict[int, list[int]] = {}
        for c in range(store.n_chunks):
            try:
                samples = store.chunk_samples(c)
                keys_at.update({s.key: i for i, s in samples if s.key})
                natoms[c] = [s.natoms for _, s in samples]
            except DataError as exc:
                rep.damaged.append(str(exc))
                bad_ranges.append(range(c * store.chunk_size, (c + 1) * store.chunk_size))
        for check in (lambda: _check_chunk_keys(store), lambda: _check_index(store, keys_at, bad_ranges, rep),
                      lambda: _check_failures(store, rep), lambda: _check_atoms(store, natoms)):
            try:
                rep.damaged += check()
            except DataError as exc:  # the LMDB pages of a whole table are damaged
                rep.damaged.append(str(exc))
    return rep


def _check_chunk_keys(store) -> list[str]:
    return [f"{store.path}: {k.decode(errors='replace')}: chunk record beyond the sample count"
            for k, _ in store.records(b"c:") if not (k[2:].isdigit() and int(k[2:]) < store.n_chunks)]


def _check_atoms(store, natoms: dict[int, list[int]]) -> list[str]:
    """Each ``a:`` record must hold the atom counts of its (readable) chunk, and no other may exist."""
    if not store.meta.get("atoms_index"):
        return []
    out, seen = [], set()
    for k, v in store.records(b"a:"):
        name = k.decode(errors="replace")
        c = int(k[2:]) if k[2:].isdigit() else -1
        seen.add(c)
        if isinstance(v, DataError):
            out.append(str(v))
        elif not 0 <= c < store.n_chunks:
            out.append(f"{store.path}: {name}: atom-count record beyond the sample count")
        elif c in natoms and bytes(v) != np.asarray(natoms[c], dtype="<u2").tobytes():
            out.append(f"{store.path}: {name}: atom counts differ from those of the chunk's samples")
    missing = sorted(set(range(store.n_chunks)) - seen)
    if missing:
        out.append(f"{store.path}: {len(missing)} chunks without their atom-count record (e.g. chunk {missing[0]})")
    return out


def _check_index(store, keys_at: dict[str, int], bad_ranges: list[range], rep: VerifyReport) -> list[str]:
    """Each ``k:`` row must point at the sample holding that key, and each key must be indexed."""
    out, indexed = [], set()
    for k, v in store.records(b"k:"):
        key = k[2:].decode(errors="replace")
        rep.n_keys += 1
        if isinstance(v, DataError):
            out.append(str(v))
            continue
        i = int.from_bytes(v[:8], "little") if len(v) == 8 else -1
        indexed.add(key)
        if keys_at.get(key) == i or (key not in keys_at and any(i in r for r in bad_ranges)):
            continue
        out.append(f"{store.path}: index row {key!r}: points at sample {i}, which does not hold that key")
    if store.sealed and rep.n_keys != store.meta.get("n_keys", rep.n_keys):
        out.append(f"{store.path}: __meta__: n_keys {store.meta.get('n_keys')} but {rep.n_keys} index rows")
    missing = sorted(set(keys_at) - indexed)
    if missing:
        out.append(f"{store.path}: {len(missing)} stored keys missing from the index (e.g. {missing[0]!r})")
    return out


def _check_failures(store, rep: VerifyReport) -> list[str]:
    out = []
    for k, v in store.records(b"f:"):
        rep.n_failures += 1
        if isinstance(v, DataError):
            out.append(str(v))
            continue
        try:
            ok = isinstance(msgpack.unpackb(v, raw=False), dict)
        except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            ok = False
        if not ok:
            out.append(f"{store.path}: {k.decode(errors='replace')}: unreadable failure row")
    if rep.n_failures != int(store.meta.get("n_failures", rep.n_failures)):
        out.append(f"{store.path}: __meta__: n_failures {store.meta.get('n_failures')} but {rep.n_failures} rows")
    return out
