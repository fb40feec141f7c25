"""HessianStore: horm's own on-disk format for labelled geometries (LMDB, no pickle).

Layout (schema 1). One LMDB file (``subdir=False``) with records:

* ``__meta__``  msgpack map: schema version, level of theory, units, code version,
  counts, Hessian codec, engine settings, provenance.
* ``c:%012d``  a chunk of up to ``chunk_size`` samples: ``<u4 count``, ``count+1`` ``<u4``
  offsets, then the samples' msgpack blobs. Sample *i* lives in chunk ``i // chunk_size``;
  reading one sample decodes only its own blob. Chunking keeps LMDB's 4 KiB page
  overhead off each sample (one Hessian blob is ~4–8 KB and would waste half a page).
* ``k:<key>``  ``<u8`` index of the sample with that key (resume and dedupe).
* ``f:<key>``  msgpack map of a failed item: reason, time, details (the failures table).

A sample blob is a msgpack map of plain values and raw little-endian byte strings:
no code can be reached from a record. Hessians are float32 and stored losslessly as the
upper triangle plus the XOR of the lower triangle's bit patterns with the transposed
upper triangle (zero for a symmetric matrix), both byte-shuffled and zlib-compressed.
So symmetric and slightly asymmetric (DFT) Hessians both read back bit-identical, and
asymmetry itself is kept when it is the data.

Every write happens in one LMDB transaction: a crash never leaves a half record, and
the count in ``__meta__`` always matches the chunks.
"""

from __future__ import annotations

import os
import time
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator

import lmdb
import msgpack
import numpy as np

from horm import __version__
from horm.data.formats import check_store_path
from horm.data.lmdb_util import MAP_SIZE, acquire_env, is_open, release_env
from horm.data.sample import Sample
from horm.errors import DataError
from horm.units import UNITS

SCHEMA_VERSION = 1
HESSIAN_CODEC = "f32-triu+xor-lower/shuffle-zlib"
META_KEY = b"__meta__"
DEFAULT_CHUNK = 32


# --- array and Hessian codecs -----------------------------------------------------------

def _shuffle_compress(a: np.ndarray, level: int = 1) -> bytes:
    b = np.ascontiguousarray(a).view(np.uint8).reshape(-1, a.dtype.itemsize).T
    return zlib.compress(np.ascontiguousarray(b).tobytes(), level)


def _unshuffle(data: bytes, dtype, n: int) -> np.ndarray:
    dt = np.dtype(dtype)
    raw = np.frombuffer(zlib.decompress(data), dtype=np.uint8)
    if raw.size != n * dt.itemsize:
        raise ValueError("decoded size mismatch")
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
    m = int(d["m"])
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


def _unarr(v: list) -> np.ndarray:
    dt, shape, raw = v
    return np.frombuffer(raw, dtype=np.dtype(dt)).reshape(shape).astype(np.dtype(dt).newbyteorder("="), copy=True)


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


def _pack_chunk(blobs: list[bytes]) -> bytes:
    offs = np.zeros(len(blobs) + 1, dtype="<u4")
    offs[1:] = np.cumsum([len(b) for b in blobs])
    return np.uint32(len(blobs)).astype("<u4").tobytes() + offs.tobytes() + b"".join(blobs)


def _unpack_chunk(buf) -> tuple[int, np.ndarray, int]:
    count = int(np.frombuffer(buf, dtype="<u4", count=1)[0])
    offs = np.frombuffer(buf, dtype="<u4", count=count + 1, offset=4)
    return count, offs, 4 + 4 * (count + 1)


def _chunk_key(c: int) -> bytes:
    return b"c:%012d" % c


# --- the store -------------------------------------------------------------------------

class HessianStore:
    """Read and append labelled Samples. Use ``create`` for a new store, ``open`` otherwise."""

    def __init__(self, path: str | os.PathLike, readonly: bool = True):
        self.path = Path(path)
        self.readonly = readonly
        if not self.path.exists():
            raise DataError(str(self.path), "no such store")
        try:
            self._load(readonly)
        except BaseException:
            self.close()
            raise
        self.chunk_size = int(self.meta["chunk_size"])

    def _load(self, readonly: bool) -> None:
        try:
            self.env = acquire_env(self.path, readonly)
            self._open = True
            with self.env.begin() as txn:
                raw = txn.get(META_KEY)
        except lmdb.Error as exc:
            raise DataError(str(self.path), f"corrupt or truncated LMDB ({exc})") from None
        if raw is None:
            raise DataError(str(self.path), "not a horm store (no __meta__ record; a HORM LMDB? use `horm data convert`)")
        self.meta = msgpack.unpackb(raw, raw=False)
        if self.meta.get("schema_version", 0) > SCHEMA_VERSION:
            raise DataError(str(self.path), f"store schema {self.meta['schema_version']} is newer than this horm ({SCHEMA_VERSION})")


    # construction ------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, level_of_theory: str, *, overwrite: bool = False,
               chunk_size: int = DEFAULT_CHUNK, **provenance: Any) -> "HessianStore":
        """Create an empty store. ``provenance`` (source, engine settings, ...) goes into __meta__."""
        path = check_store_path(path)
        if is_open(path):
            raise DataError(str(path), "store is open in this process; close it before re-creating")
        if path.exists():
            if not overwrite:
                raise DataError(str(path), "store already exists (pass overwrite=True or open it to append)")
            path.unlink()
            Path(str(path) + "-lock").unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "schema_version": SCHEMA_VERSION,
            "format": "horm-store",
            "level_of_theory": level_of_theory,
            "units": dict(UNITS),
            "code_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "hessian_codec": HESSIAN_CODEC,
            "hessian_dtype": "float32",
            "chunk_size": int(chunk_size),
            "count": 0,
            "n_failures": 0,
            "provenance": provenance,
        }
        env = lmdb.open(str(path), subdir=False, map_size=MAP_SIZE)
        with env.begin(write=True) as txn:
            txn.put(META_KEY, msgpack.packb(meta, use_bin_type=True))
        env.close()
        return cls(path, readonly=False)

    @classmethod
    def open(cls, path: str | os.PathLike, readonly: bool = True) -> "HessianStore":
        return cls(path, readonly=readonly)

    # reading -----------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.meta["count"])

    def _refresh(self, txn) -> None:
        self.meta = msgpack.unpackb(txn.get(META_KEY), raw=False)

    def __getitem__(self, i: int) -> Sample:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for {n} samples")
        c, slot = divmod(i, self.chunk_size)
        try:
            with self.env.begin(buffers=True) as txn:
                buf = txn.get(_chunk_key(c))
                if buf is None:
                    raise DataError(str(self.path), "missing chunk (store truncated?)", f"sample {i}")
                count, offs, base = _unpack_chunk(buf)
                if slot >= count:
                    raise DataError(str(self.path), "chunk shorter than count (store corrupt)", f"sample {i}")
                blob = bytes(buf[base + offs[slot]: base + offs[slot + 1]])
        except lmdb.Error as exc:
            raise DataError(str(self.path), f"corrupt or truncated LMDB ({exc})", f"sample {i}") from None
        return decode_sample(blob, str(self.path), f"sample {i}")

    def __iter__(self) -> Iterator[Sample]:
        n = len(self)
        with self.env.begin(buffers=True) as txn:
            for c in range((n + self.chunk_size - 1) // self.chunk_size):
                buf = txn.get(_chunk_key(c))
                if buf is None:
                    raise DataError(str(self.path), "missing chunk (store truncated?)", f"chunk {c}")
                count, offs, base = _unpack_chunk(buf)
                for s in range(count):
                    i = c * self.chunk_size + s
                    if i >= n:
                        return
                    yield decode_sample(bytes(buf[base + offs[s]: base + offs[s + 1]]), str(self.path), f"sample {i}")

    def has_key(self, key: str) -> bool:
        with self.env.begin() as txn:
            return txn.get(b"k:" + key.encode()) is not None

    def keys(self) -> set[str]:
        with self.env.begin() as txn:
            cur = txn.cursor()
            out = set()
            if cur.set_range(b"k:"):
                for k in cur.iternext(values=False):
                    if not k.startswith(b"k:"):
                        break
                    out.add(k[2:].decode())
            return out

    def failures(self) -> list[dict]:
        """The failures table: one dict (key, reason, time, details) per failed item."""
        out = []
        with self.env.begin() as txn:
            cur = txn.cursor()
            if cur.set_range(b"f:"):
                for k, v in cur.iternext():
                    if not k.startswith(b"f:"):
                        break
                    out.append({"key": k[2:].decode(), **msgpack.unpackb(v, raw=False)})
        return out

    # writing -----------------------------------------------------------------------
    def _check_writable(self):
        if self.readonly:
            raise DataError(str(self.path), "store opened read-only")

    def append(self, sample: Sample, validate: bool = True) -> int:
        """Append one sample atomically; returns its index. A key already present raises."""
        return self.extend([sample], validate=validate)[0]

    def extend(self, samples: Iterable[Sample], validate: bool = True, skip_existing: bool = False) -> list[int]:
        """Append samples in one transaction (all or nothing). Returns their indices.

        Samples whose ``key`` is already stored raise DataError, or are skipped with
        ``skip_existing=True`` (then their index is -1).
        """
        self._check_writable()
        idx: list[int] = []
        with self.env.begin(write=True) as txn:
            self._refresh(txn)
            n = int(self.meta["count"])
            k = self.chunk_size
            c = n // k
            blobs: list[bytes] = []
            if n % k:
                buf = txn.get(_chunk_key(c))
                count, offs, base = _unpack_chunk(buf)
                blobs = [bytes(buf[base + offs[s]: base + offs[s + 1]]) for s in range(count)]
            seen: set[str] = set()
            cleared = 0
            for s in samples:
                if validate:
                    s.validate(str(self.path), f"sample {s.key or n}")
                if s.key:
                    kk = b"k:" + s.key.encode()
                    if s.key in seen or txn.get(kk) is not None:
                        if skip_existing:
                            idx.append(-1)
                            continue
                        raise DataError(str(self.path), f"duplicate key {s.key!r}")
                    seen.add(s.key)
                    txn.put(kk, np.uint64(n).astype("<u8").tobytes())
                    if txn.delete(b"f:" + s.key.encode()):  # a later success clears its failure row
                        cleared += 1
                blobs.append(encode_sample(s))
                idx.append(n)
                n += 1
                if len(blobs) == k:
                    txn.put(_chunk_key(c), _pack_chunk(blobs))
                    c, blobs = c + 1, []
            if blobs:
                txn.put(_chunk_key(c), _pack_chunk(blobs))
            self.meta["count"] = n
            self.meta["n_failures"] = int(self.meta.get("n_failures", 0)) - cleared
            txn.put(META_KEY, msgpack.packb(self.meta, use_bin_type=True))
        return idx

    def record_failure(self, key: str, reason: str, **details: Any) -> None:
        """Add (or replace) a row of the failures table. Nothing is added to the data."""
        self._check_writable()
        with self.env.begin(write=True) as txn:
            self._refresh(txn)
            row = {"reason": str(reason), "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "details": details}
            fkey = b"f:" + key.encode()
            is_new = txn.get(fkey) is None
            txn.put(fkey, msgpack.packb(row, use_bin_type=True, default=str))
            self.meta["n_failures"] = int(self.meta.get("n_failures", 0)) + int(is_new)
            txn.put(META_KEY, msgpack.packb(self.meta, use_bin_type=True))

    def update_meta(self, **fields: Any) -> None:
        self._check_writable()
        with self.env.begin(write=True) as txn:
            self._refresh(txn)
            self.meta.update(fields)
            txn.put(META_KEY, msgpack.packb(self.meta, use_bin_type=True, default=str))

    def compact(self, dst: str | os.PathLike) -> Path:
        """Write a compacted copy (free pages dropped) to ``dst``."""
        dst = Path(dst)
        self.env.copy(str(dst), compact=True)
        return dst

    def close(self):
        if getattr(self, "_open", False):
            self._open = False
            release_env(self.path)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def is_store(path: str | os.PathLike) -> bool:
    """True if ``path`` is a horm store (an LMDB file with a ``__meta__`` record)."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        env = acquire_env(p, readonly=None)
    except DataError:
        return False
    try:
        with env.begin() as txn:
            return txn.get(META_KEY) is not None
    except lmdb.Error:
        return False
    finally:
        release_env(p)

