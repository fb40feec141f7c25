"""HessianStore: horm's own on-disk format for labelled geometries (LMDB, no pickle).

Layout (schema 2). One LMDB file (``subdir=False``) with records:

* ``__meta__``  msgpack map: schema version, level of theory, units, code version,
  counts, Hessian codec, engine settings, provenance.
* ``c:%012d``  a chunk of up to ``chunk_size`` samples: ``<u4 count``, ``count+1`` ``<u4``
  offsets, then the samples' msgpack blobs. Sample *i* lives in chunk ``i // chunk_size``;
  reading one sample decodes only its own blob. Chunking keeps LMDB's 4 KiB page
  overhead off each sample (one Hessian blob is ~4–8 KB and would waste half a page).
* ``k:<key>``  ``<u8`` index of the sample with that key (resume and dedupe).
* ``a:%012d``  ``<u2`` atom count of each sample of chunk c (stores with ``meta["atoms_index"]``),
  for batching without reading samples (:mod:`horm.data.index`).
* ``f:<key>``  msgpack map of a failed item: reason, time, details (the failures table).

Every value carries a CRC-32 checked on each read (``horm.data.integrity``); schema 1
stores (without) still read and append, unprotected. Codecs are in ``store_codec``: a
sample blob is a msgpack map of plain values and raw little-endian byte strings, so
no code can be reached from a record; Hessians are float32, stored losslessly as the
upper triangle plus an XOR residual of the lower one.

Every write happens in one LMDB transaction: a crash never leaves a half record, and
the count in ``__meta__`` always matches the chunks.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterable, Iterator

import lmdb
import msgpack
import numpy as np

from horm._version import __version__
from horm.data.formats import check_store_path
from horm.data.integrity import decode_meta, encode_meta, grew_since_open, seal, unseal
from horm.data.lmdb_util import (MAP_SIZE, acquire_env, check_value_extent, check_value_extents, has_record,
                                  is_open, lmdb_errors, open_lmdb, prefix_end, release_env, remove_lmdb)
from horm.data.plausibility import check_written
from horm.data.sample import Sample
from horm.data.store_codec import (HESSIAN_CODEC, SCHEMA_VERSION, atoms_key, blob_atoms, chunk_key,  # noqa: F401
                                   decode_hessian, pack_atoms, decode_sample, encode_hessian, encode_sample, new_meta, pack_chunk,
                                   unpack_chunk)
from horm.errors import DataError
from horm.safe_io import check_free_space

META_KEY = b"__meta__"
DEFAULT_CHUNK = 32


# --- the store -------------------------------------------------------------------------

class HessianStore:
    """Read and append labelled Samples. Use ``create`` for a new store, ``open`` otherwise.

    ``sealed`` is True for schema 2 stores, whose every record carries a checksum.
    """

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
        self._env, self._pid = acquire_env(self.path, readonly), os.getpid()
        self._open = True
        check_value_extent(self.path, META_KEY, "__meta__")
        with lmdb_errors(self.path), self.env.begin() as txn:
            raw = txn.get(META_KEY)
            if raw is None:
                raise DataError(str(self.path), "not a horm store (no __meta__ record; a HORM LMDB? use `horm data convert`)")
            self.meta, self.sealed = decode_meta(raw, str(self.path))
        if self.meta["schema_version"] > SCHEMA_VERSION:
            raise DataError(str(self.path), f"store schema {self.meta['schema_version']} is newer than this horm ({SCHEMA_VERSION})")

    # construction ------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, level_of_theory: str, *, overwrite: bool = False,
               chunk_size: int = DEFAULT_CHUNK, checksums: bool = True, **provenance: Any) -> "HessianStore":
        """Create an empty store. ``provenance`` (source, engine settings, ...) goes into __meta__.

        ``checksums=False`` writes the old schema 1 layout (no checksums); only for
        compatibility tests and the bit-flip benchmark's baseline.
        """
        path = check_store_path(path)
        if is_open(path):
            raise DataError(str(path), "store is open in this process; close it before re-creating")
        if path.exists():
            if not overwrite:
                raise DataError(str(path), "store already exists (pass overwrite=True or open it to append)")
            if not path.is_file():
                raise DataError(str(path), "exists and is not a file; refusing to overwrite it")
            path.unlink()
            Path(str(path) + "-lock").unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = new_meta(level_of_theory, __version__, chunk_size, checksums, provenance)
        try:
            with lmdb_errors(path, write="creating the store"):
                env = open_lmdb(path, readonly=False)
                with env.begin(write=True) as txn:
                    txn.put(META_KEY, encode_meta(meta, sealed=checksums))
                env.close()
        except BaseException:
            if path.exists():
                remove_lmdb(path)  # what this call created, never a half store
            raise
        return cls(path, readonly=False)

    @classmethod
    def open(cls, path: str | os.PathLike, readonly: bool = True) -> "HessianStore":
        return cls(path, readonly=readonly)

    # records -----------------------------------------------------------------------
    @property
    def env(self) -> lmdb.Environment:
        """The LMDB environment, opened again in a forked child (a DataLoader worker)."""
        if self._pid != os.getpid():
            self._env, self._pid = acquire_env(self.path, self.readonly), os.getpid()
        return self._env

    def _get(self, txn, key: bytes, where: str):
        """A record's payload (checksum verified when sealed), or None if absent.

        A read-only store checks each record once per process: the file does not change
        under it, and random access then costs no repeated checksum of a whole chunk.
        """
        checked = self.__dict__.setdefault("_checked", set())
        if key in checked:
            buf = txn.get(key)
            return None if buf is None else memoryview(buf)[4 if self.sealed else 0:]
        check_value_extent(self.path, key, where)  # by pread, before LMDB touches the value
        buf = txn.get(key)
        if buf is None:
            return None
        out = self._payload(key, buf, where)
        if self.readonly:
            checked.add(key)
        return out

    def _payload(self, key: bytes, buf, where: str):
        if len(buf) > os.path.getsize(self.path):  # a damaged length; do not touch the bytes
            raise DataError(str(self.path), f"record claims {len(buf)} bytes, more than the file holds", where)
        return unseal(key, buf, str(self.path), where) if self.sealed else memoryview(buf)

    def _put(self, txn, key: bytes, payload: bytes) -> None:
        txn.put(key, seal(key, payload) if self.sealed else payload)
        self._pending += len(payload) + len(key)

    @contextmanager
    def _writing(self, what: str):
        """One write transaction: the free space is checked before it commits (the size is
        known by then), and a failure rolls it back, the in-memory metadata too."""
        self._check_writable()
        saved, self._pending = dict(self.meta), 0
        try:
            with lmdb_errors(self.path, write=what), self.env.begin(write=True) as txn:
                self._refresh(txn)
                yield txn
                check_free_space(self.path, self._pending, what)
        except BaseException:
            self.meta = saved
            raise

    def _put_meta(self, txn) -> None:
        txn.put(META_KEY, encode_meta(self.meta, self.sealed))

    def _refresh(self, txn) -> None:
        self.meta, _ = decode_meta(txn.get(META_KEY), str(self.path))

    def _keys_of(self, txn, a: int, b: int) -> str:
        """The keys of samples a..b-1 from the index (for error messages; never raises)."""
        found = []
        try:
            check_value_extents(self.path, b"k:", prefix_end(b"k:"))
            for k, v in self._scan(txn, b"k:"):
                try:
                    i = int(np.frombuffer(self._payload(k, v, ""), dtype="<u8", count=1)[0])
                except (DataError, ValueError):
                    continue
                if a <= i < b:
                    found.append(k[2:].decode(errors="replace"))
        except (lmdb.Error, DataError):
            pass
        found.sort()
        found = found if len(found) <= 5 else [found[0], found[1], f"… ({len(found) - 3} more) …", found[-1]]
        return ", ".join(found) or "none indexed"

    @staticmethod
    def _scan(txn, prefix: bytes):
        cur = txn.cursor()
        if cur.set_range(prefix):
            for k, v in cur.iternext():
                if not bytes(k).startswith(prefix):
                    break
                yield bytes(k), v

    def _chunk(self, txn, c: int) -> list:
        """Sample blobs of chunk ``c``; DataError naming the chunk, its samples and keys."""
        a = c * self.chunk_size
        b = min(a + self.chunk_size, len(self))
        where = f"chunk {c}"
        try:
            buf = self._get(txn, chunk_key(c), where)
            if buf is None:
                raise DataError(str(self.path), "missing chunk (store truncated?)", where)
            blobs = unpack_chunk(buf, str(self.path), where)
            if len(blobs) > b - a and b == len(self) and grew_since_open(txn.get(META_KEY), self.path, a, self.chunk_size, len(blobs)):
                blobs = blobs[: b - a]  # a writer appended after this reader opened: keep our snapshot
            if len(blobs) != b - a:
                raise DataError(str(self.path), f"chunk holds {len(blobs)} samples, the metadata says {b - a}", where)
        except DataError as exc:
            raise DataError(str(self.path), f"{exc.problem} (samples {a}–{b - 1}; keys {self._keys_of(txn, a, b)})",
                            where) from None
        return blobs

    # reading -----------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.meta["count"])

    @property
    def n_chunks(self) -> int:
        return -(-len(self) // self.chunk_size)

    def __getitem__(self, i: int) -> Sample:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for {n} samples")
        c, slot = divmod(i, self.chunk_size)
        with lmdb_errors(self.path, f"sample {i}"), self.env.begin(buffers=True) as txn:
            blob = bytes(self._chunk(txn, c)[slot])
        return decode_sample(blob, str(self.path), f"sample {i}")

    def chunk_blobs(self, c: int) -> list[bytes]:
        """The sample blobs of chunk ``c`` (checksum verified)."""
        with lmdb_errors(self.path, f"chunk {c}"), self.env.begin(buffers=True) as txn:
            return [bytes(b) for b in self._chunk(txn, c)]

    def chunk_samples(self, c: int) -> list[tuple[int, Sample]]:
        """(index, Sample) for every sample of chunk ``c``."""
        a = c * self.chunk_size
        return [(a + s, decode_sample(b, str(self.path), f"sample {a + s}")) for s, b in enumerate(self.chunk_blobs(c))]

    def __iter__(self) -> Iterator[Sample]:
        for c in range(self.n_chunks):
            for _, s in self.chunk_samples(c):
                yield s

    def records(self, prefix: bytes) -> list[tuple[bytes, Any]]:
        """(LMDB key, payload or the DataError it raised) for every record under ``prefix``."""
        out = []
        check_value_extents(self.path, prefix, prefix_end(prefix), prefix.decode() + "* records")
        with lmdb_errors(self.path), self.env.begin() as txn:
            for k, v in self._scan(txn, prefix):
                try:
                    out.append((k, bytes(self._payload(k, v, k.decode(errors="replace")))))
                except DataError as exc:
                    out.append((k, exc))
        return out

    def has_key(self, key: str) -> bool:
        with lmdb_errors(self.path), self.env.begin() as txn:
            return self._get(txn, b"k:" + key.encode(), f"index row {key!r}") is not None

    def _rows(self, prefix: bytes, count_field: str, what: str) -> list[tuple[bytes, bytes]]:
        rows = self.records(prefix)
        for _, v in rows:
            if isinstance(v, DataError):
                raise v
        want = self.meta.get(count_field) if self.sealed else None
        if want is not None and want != len(rows):
            raise DataError(str(self.path), f"{what} has {len(rows)} rows, the metadata says {want} (store damaged)")
        return rows

    def keys(self) -> set[str]:
        """Every indexed sample key (each index row's checksum and the row count verified)."""
        return {k[2:].decode(errors="replace") for k, _ in self._rows(b"k:", "n_keys", "the key index")}

    def failures(self) -> list[dict]:
        """The failures table: one dict (key, reason, time, details) per failed item."""
        return [{"key": k[2:].decode(errors="replace"), **msgpack.unpackb(v, raw=False)}
                for k, v in self._rows(b"f:", "n_failures", "the failures table")]

    # writing -----------------------------------------------------------------------
    def _check_writable(self):
        if self.readonly:
            raise DataError(str(self.path), "store opened read-only")

    def append(self, sample: Sample, validate: bool = True) -> int:
        """Append one sample atomically; returns its index. A key already present raises."""
        return self.extend([sample], validate=validate)[0]

    def extend(self, samples: Iterable[Sample], validate: bool = True, skip_existing: bool = False, allow_outliers=False) -> list[int]:
        """Append samples in one transaction (all or nothing). Returns their indices.

        Samples whose ``key`` is already stored raise DataError, or are skipped with
        ``skip_existing=True`` (index -1). ``allow_outliers``: no label bounds (:mod:`horm.data.plausibility`).
        """
        idx: list[int] = []
        with self._writing("this append") as txn:
            n = int(self.meta["count"])
            k = self.chunk_size
            c = n // k
            # the partial last chunk is verified before it is re-packed, never laundered
            blobs: list[bytes] = [bytes(b) for b in self._chunk(txn, c)] if n % k else []
            indexed = bool(self.meta.get("atoms_index"))
            atoms = [blob_atoms(b) or decode_sample(b, str(self.path), f"chunk {c}").natoms
                     for b in blobs] if indexed else []
            seen: set[str] = set()
            cleared = 0
            n_keys = int(self.meta.get("n_keys", 0))
            for s in samples:
                if validate:
                    check_written(s, str(self.path), f"sample {s.key or n}", allow_outliers)
                if s.key:
                    kk = b"k:" + s.key.encode()
                    if s.key in seen or txn.get(kk) is not None:
                        if skip_existing:
                            idx.append(-1)
                            continue
                        raise DataError(str(self.path), f"duplicate key {s.key!r}")
                    seen.add(s.key)
                    n_keys += 1
                    self._put(txn, kk, np.uint64(n).astype("<u8").tobytes())
                    if txn.delete(b"f:" + s.key.encode()):  # a later success clears its failure row
                        cleared += 1
                blobs.append(encode_sample(s))
                atoms.append(len(s.numbers))
                idx.append(n)
                n += 1
                if len(blobs) == k:
                    self._put_chunk(txn, c, blobs, atoms if indexed else None)
                    c, blobs, atoms = c + 1, [], []
            if blobs:
                self._put_chunk(txn, c, blobs, atoms if indexed else None)
            self.meta["count"] = n
            if "n_keys" in self.meta:
                self.meta["n_keys"] = n_keys
            self.meta["n_failures"] = int(self.meta.get("n_failures", 0)) - cleared
            self._put_meta(txn)
        return idx

    def _put_chunk(self, txn, c: int, blobs: list[bytes], atoms: list[int] | None) -> None:
        self._put(txn, chunk_key(c), pack_chunk(blobs))
        if atoms is not None:
            self._put(txn, atoms_key(c), pack_atoms(atoms))

    def record_failure(self, key: str, reason: str, **details: Any) -> None:
        """Add (or replace) a row of the failures table. Nothing is added to the data."""
        with self._writing(f"the failure row of {key!r}") as txn:
            row = {"reason": str(reason), "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "details": details}
            fkey = b"f:" + key.encode()
            is_new = txn.get(fkey) is None
            self._put(txn, fkey, msgpack.packb(row, use_bin_type=True, default=str))
            self.meta["n_failures"] = int(self.meta.get("n_failures", 0)) + int(is_new)
            self._put_meta(txn)

    def update_meta(self, **fields: Any) -> None:
        with self._writing("the metadata update") as txn:
            self.meta.update(fields)
            self._put_meta(txn)

    def compact(self, dst: str | os.PathLike) -> Path:
        """Write a compacted copy (free pages dropped) to ``dst``."""
        dst = Path(dst)
        with lmdb_errors(self.path):
            self.env.copy(str(dst), compact=True)
        return dst

    def close(self):
        if getattr(self, "_open", False):
            self._open = False
            release_env(self.path)

    def __del__(self):
        with suppress(Exception):
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

def is_store(path: str | os.PathLike) -> bool:
    """True if ``path`` is a horm store (an LMDB file with a ``__meta__`` record; a damaged one too:
    ``HessianStore.open`` then says what is wrong). A map failure is raised, never a False."""
    return has_record(path, META_KEY)
