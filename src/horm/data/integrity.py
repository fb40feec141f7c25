"""Checksums for the horm store: every record carries a CRC-32 of its payload.

Schema 2 stores seal each value as ``<u4 crc32(key + payload)> + payload``; ``__meta__``
is ``b"HMC2" + <u4 crc32> + msgpack``. A flipped bit in a chunk, an index row, a failure
row or the metadata is found on read (DataError naming the store, the record and the
keys it holds) and by :func:`horm.data.verify.verify_store`, which scans everything and
reports each damaged record without touching the others. Schema 1 stores (no checksums)
still read; ``verify_store`` reports them as unprotected and checks only their structure.

zlib.crc32 detects every single-bit and every burst error up to 32 bits in a record.
"""

from __future__ import annotations

import struct
import zlib

import msgpack

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


def grew_since_open(raw_meta: bytes | None, path, first: int, chunk_size: int, held: int) -> bool:
    """True when the store's current ``__meta__`` (``raw_meta``, read in the same transaction as the
    chunk) accounts for the ``held`` samples of the chunk starting at sample ``first``: the last chunk
    grew by an append after this reader opened the store; it is not damaged."""
    if raw_meta is None:
        return False
    now, _ = decode_meta(raw_meta, str(path))
    return min(first + chunk_size, int(now["count"])) - first == held
