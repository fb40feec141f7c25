"""Byte codecs of the horm store: samples (msgpack of raw little-endian arrays), Hessians
(float32 upper triangle + XOR residual of the lower one, byte-shuffled and zlib-compressed)
and chunks (``<u4 count``, ``count+1`` ``<u4`` offsets, then the sample blobs).

Decoders treat their input as hostile: every size is checked against the bytes present,
and any inconsistency is a DataError naming the store and the record.
"""

from __future__ import annotations

import zlib
from typing import Any

import msgpack
import numpy as np

from horm.data.sample import MAX_ATOMS, Sample
from horm.errors import DataError
from horm.units import UNITS

SCHEMA_VERSION = 2  # 2: every record sealed with a CRC-32; 1: no checksums
HESSIAN_CODEC = "f32-triu+xor-lower/shuffle-zlib"


def new_meta(level_of_theory: str, code_version: str, chunk_size: int, checksums: bool, provenance: dict) -> dict:
    """The ``__meta__`` map of a new, empty store."""
    import time

    return {
        "schema_version": SCHEMA_VERSION if checksums else 1,
        "format": "horm-store",
        **({"checksum": "crc32"} if checksums else {}),
        "level_of_theory": level_of_theory,
        "units": dict(UNITS),
        "code_version": code_version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "hessian_codec": HESSIAN_CODEC,
        "hessian_dtype": "float32",
        "chunk_size": int(chunk_size),
        "count": 0,
        "n_keys": 0,
        "n_failures": 0,
        "atoms_index": True,  # an ``a:`` record of atom counts beside every chunk (see atoms_key)
        "provenance": provenance,
    }

# --- array and Hessian codecs -----------------------------------------------------------

def _shuffle_compress(a: np.ndarray, level: int = 1) -> bytes:
    b = np.ascontiguousarray(a).view(np.uint8).reshape(-1, a.dtype.itemsize).T
    return zlib.compress(np.ascontiguousarray(b).tobytes(), level)


def _unshuffle(data: bytes, dtype, n: int) -> np.ndarray:
    dt = np.dtype(dtype)
    d = zlib.decompressobj()
    out = d.decompress(data, n * dt.itemsize + 1)  # never inflate past the expected size
    if len(out) != n * dt.itemsize or d.unconsumed_tail or not d.eof:
        raise ValueError("decoded size mismatch")
    raw = np.frombuffer(out, dtype=np.uint8)
    return raw.reshape(dt.itemsize, n).T.copy().view(dt).reshape(n)


def encode_hessian(h: np.ndarray) -> dict:
    h = np.asarray(h, dtype="<f4")
    m = h.shape[0]
    iu = np.triu_indices(m)
    iu1 = np.triu_indices(m, 1)
    upper = h[iu]
    xor = h.T[iu1].view("<u4") ^ h[iu1].view("<u4")
    out = {"m": m, "u": _shuffle_compress(upper)}
    if xor.any():
        out["x"] = _shuffle_compress(xor)
    return out


def decode_hessian(d: dict) -> np.ndarray:
    m = d["m"]
    if type(m) is not int or not 0 <= m <= 3 * MAX_ATOMS:
        raise ValueError(f"Hessian dimension {str(m)[:30]} outside 0..{3 * MAX_ATOMS}")
    iu = np.triu_indices(m)
    iu1 = np.triu_indices(m, 1)
    h = np.zeros((m, m), dtype="<f4")
    h[iu] = _unshuffle(d["u"], "<f4", iu[0].size)
    lower_bits = h[iu1].view("<u4")
    if "x" in d:
        lower_bits = lower_bits ^ _unshuffle(d["x"], "<u4", iu1[0].size)
    h.T[iu1] = lower_bits.view("<f4")
    return h.astype(np.float32, copy=False)


def _arr(a: np.ndarray) -> list:
    a = np.asarray(a)
    a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return [a.dtype.str, list(a.shape), a.tobytes()]


_ARRAY_KINDS = "fiub"  # plain numbers only: no object, void or string dtypes from a file


def _unarr(v: list) -> np.ndarray:
    dt, shape, raw = v
    dt = np.dtype(dt)
    if dt.kind not in _ARRAY_KINDS or not isinstance(shape, list) or len(shape) > 8:
        raise ValueError(f"unsupported array {dt.str} of shape {str(shape)[:40]}")
    return np.frombuffer(raw, dtype=dt).reshape(shape).astype(dt.newbyteorder("="), copy=True)


def encode_sample(s: Sample) -> bytes:
    d: dict[str, Any] = {
        "z": np.asarray(s.numbers, dtype=np.uint8).tobytes(),
        "pos": _arr(s.pos),
        "q": int(s.charge),
        "m": int(s.multiplicity),
    }
    if s.energy is not None:
        d["E"] = float(s.energy)
    if s.forces is not None:
        f = np.asarray(s.forces)
        d["F"] = _arr(f if f.dtype == np.float32 else f.astype(np.float64))
    if s.hessian is not None:
        d["H"] = encode_hessian(s.hessian)
    for name in ("rxn", "origin", "key"):
        v = getattr(s, name)
        if v:
            d[name] = str(v)
    if s.extras:
        d["x"] = {str(k): (_arr(v) if isinstance(v, np.ndarray) or np.ndim(v) else v) for k, v in s.extras.items()}
    return msgpack.packb(d, use_bin_type=True)


def decode_sample(blob, source: str = "<store>", where: str | None = None) -> Sample:
    try:
        d = msgpack.unpackb(blob, raw=False, strict_map_key=True)
        numbers = np.frombuffer(d["z"], dtype=np.uint8).astype(np.int64)
        extras = {}
        for k, v in d.get("x", {}).items():
            extras[k] = _unarr(v) if isinstance(v, list) and len(v) == 3 and isinstance(v[2], bytes) else v
        return Sample(
            numbers=numbers,
            pos=_unarr(d["pos"]),
            energy=d.get("E"),
            forces=_unarr(d["F"]) if "F" in d else None,
            hessian=decode_hessian(d["H"]) if "H" in d else None,
            charge=int(d.get("q", 0)),
            multiplicity=int(d.get("m", 1)),
            rxn=d.get("rxn", ""),
            origin=d.get("origin", ""),
            key=d.get("key", ""),
            extras=extras,
        )
    except (ValueError, KeyError, TypeError, zlib.error, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError) as exc:
        raise DataError(source, f"corrupt sample record ({type(exc).__name__}: {exc})", where) from None


def pack_chunk(blobs: list[bytes]) -> bytes:
    offs = np.zeros(len(blobs) + 1, dtype="<u4")
    offs[1:] = np.cumsum([len(b) for b in blobs])
    return np.uint32(len(blobs)).astype("<u4").tobytes() + offs.tobytes() + b"".join(blobs)


def unpack_chunk(buf, source: str, where: str) -> list[memoryview]:
    """Split a chunk into its sample blobs (views), checking count and offsets against its size."""
    buf = memoryview(buf)
    size = len(buf)
    count = int(np.frombuffer(buf, dtype="<u4", count=1)[0]) if size >= 4 else -1
    base = 4 + 4 * (count + 1)
    if count < 0 or base > size:
        raise DataError(source, f"corrupt chunk header ({count} samples in {size} bytes)", where)
    offs = np.frombuffer(buf, dtype="<u4", count=count + 1, offset=4).astype(np.int64)
    if offs[0] != 0 or np.any(np.diff(offs) < 0) or base + offs[-1] != size:
        raise DataError(source, "corrupt chunk offsets", where)
    return [buf[base + offs[s]: base + offs[s + 1]] for s in range(count)]


def chunk_key(c: int) -> bytes:
    return b"c:%012d" % c


# --- atom counts beside the chunks ---------------------------------------------------------
# ``a:%012d`` holds the atom count of each sample of chunk c as ``<u2`` (a sample has at most
# 10,000 atoms), written in the same transaction as the chunk: batching by atoms reads these
# 64-byte records, not the samples (a store written before them reads its chunk headers instead).

def atoms_key(c: int) -> bytes:
    return b"a:%012d" % c


def pack_atoms(counts: list[int]) -> bytes:
    return np.asarray(counts, dtype="<u2").tobytes()


def unpack_atoms(buf, expected: int, source: str, where: str) -> np.ndarray:
    """The atom counts of a chunk of ``expected`` samples; DataError on any other size or a zero."""
    if len(buf) != 2 * expected:
        raise DataError(source, f"atom-count record of {len(buf)} bytes for {expected} samples", where)
    out = np.frombuffer(bytes(buf), dtype="<u2").astype(np.int32)
    if expected and out.min() < 1:
        raise DataError(source, "atom-count record holds a sample of 0 atoms", where)
    return out


def blob_atoms(blob) -> int | None:
    """The atom count from a sample blob's msgpack header: a map whose first entry is ``z`` (bin 8
    or bin 16 of one byte per atom, as :func:`encode_sample` writes it); None for any other layout."""
    if len(blob) < 6 or not 0x80 <= blob[0] <= 0x8F or bytes(blob[1:3]) != b"\xa1z":
        return None
    if blob[3] == 0xC4:
        return blob[4]
    return int.from_bytes(bytes(blob[4:6]), "big") if blob[3] == 0xC5 else None
