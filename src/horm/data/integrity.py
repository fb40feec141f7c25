"""Checksums for the horm store: every record carries a CRC-32 of its payload.

Schema 2 stores seal each value as ``<u4 crc32(key + payload)> + payload``; ``__meta__``
is ``b"HMC2" + <u4 crc32> + msgpack``. A flipped bit in a chunk, an index row, a failure
row or the metadata is found on read (DataError naming the store, the record and the
keys it holds) and by ``verify_store``, which scans everything and reports each damaged
record without touching the others. Schema 1 stores (no checksums) still read;
``verify_store`` reports them as unprotected and checks only their structure.

zlib.crc32 detects every single-bit and every burst error up to 32 bits in a record.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import msgpack
import numpy as np

from horm.errors import DataError

META_MAGIC = b"HMC2"
CHECKSUM = "crc32"


def seal(key: bytes, payload: bytes) -> bytes:
    """``<u4 crc32(key + payload)> + payload``: the LMDB key is covered too, so a flipped
    bit in a key name is caught like one in the value."""
    return struct.pack("<I", zlib.crc32(payload, zlib.crc32(key))) + payload


def unseal(key: bytes, buf, source: str, where: str) -> memoryview:
    """The payload of a sealed value, or DataError if its checksum does not match."""
    buf = memoryview(buf)
    if len(buf) < 4:
        raise DataError(source, f"record of {len(buf)} bytes is too short for its checksum", where)
    payload = buf[4:]
    if struct.unpack("<I", buf[:4])[0] != zlib.crc32(payload, zlib.crc32(key)):
        raise DataError(source, "checksum mismatch (the record is damaged)", where)
    return payload


def encode_meta(meta: dict, sealed: bool) -> bytes:
    packed = msgpack.packb(meta, use_bin_type=True, default=str)
    return META_MAGIC + seal(b"__meta__", packed) if sealed else packed


_META_TYPES = {"schema_version": int, "chunk_size": int, "count": int, "level_of_theory": str}


def decode_meta(raw, source: str) -> tuple[dict, bool]:
    """``(meta, sealed)`` from a ``__meta__`` value; DataError if it is damaged or incomplete."""
    raw = bytes(raw)
    sealed = raw[:4] == META_MAGIC
    body = unseal(b"__meta__", raw[4:], source, "__meta__") if sealed else raw
    try:
        meta = msgpack.unpackb(body, raw=False)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise DataError(source, f"unreadable metadata ({type(exc).__name__})", "__meta__") from None
    if not isinstance(meta, dict):
        raise DataError(source, "metadata is not a map", "__meta__")
    for k, t in _META_TYPES.items():
        if not isinstance(meta.get(k), t) or isinstance(meta.get(k), bool):
            raise DataError(source, f"metadata field {k!r} missing or not {t.__name__}", "__meta__")
    if meta["chunk_size"] < 1 or meta["count"] < 0:
        raise DataError(source, f"metadata chunk_size {meta['chunk_size']} / count {meta['count']} out of range",
                        "__meta__")
    if sealed != (meta["schema_version"] >= 2):
        raise DataError(source, f"schema {meta['schema_version']} store with{'out' * sealed} a sealed header "
                                "(metadata damaged)", "__meta__")
    return meta, sealed


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
    from horm.data.store import HessianStore

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


def grew_since_open(raw_meta: bytes | None, path, first: int, chunk_size: int, held: int) -> bool:
    """True when the store's current ``__meta__`` (``raw_meta``, read in the same transaction as the
    chunk) accounts for the ``held`` samples of the chunk starting at sample ``first``: the last chunk
    grew by an append after this reader opened the store; it is not damaged."""
    if raw_meta is None:
        return False
    now, _ = decode_meta(raw_meta, str(path))
    return min(first + chunk_size, int(now["count"])) - first == held
