"""Per-file indexes for training at scale, read once and cached: each sample's atom count (for
size-bucketed batching, :mod:`horm.data.sampler`) and its reaction (for the split by reaction).

**Atom counts.**
- A horm store: its ``a:`` records, one of 64 bytes beside each chunk, written with it. A store
  written before those records: the length of the first field of each sample blob (``z``), read
  from the blob's msgpack header without decoding it (any other header: the blob is decoded).
- A published HORM LMDB: a record is dominated by its (3N)² Hessian, so its byte length fixes N.
  The lengths come from LMDB's leaf pages (no value is touched); a seeded probe of 64 records is
  decoded to fit length = a + bN + cN², and the fit is used only when it recovers every probe
  exactly with a margin of at least a quarter of the gap between neighbouring N. A record whose
  length is not within that margin of any N is decoded, and so is every record when the fit fails.
  Either way the count is that of the record's own fields, so batches keep their atom budget.

**Reactions.** ``rxn`` of every sample (decoded: one pass, with a progress bar), only when a split
needs it.

**Cache.** ``$HORM_CACHE_DIR``, else ``$XDG_CACHE_HOME/horm``, else ``~/.cache/horm``; one ``.npz``
per file and index, keyed by the file's real path, size, mtime and sample count and a CRC-32 of
its first and last records, so a changed file is noticed and indexed again. A cache file that is
unreadable or inconsistent is ignored (and rewritten), never trusted: it is checked against the
count and bounds like any input. An unwritable cache directory only costs the next run the pass.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path

import numpy as np

from horm.data.sample import MAX_ATOMS
from horm.errors import DataError
from horm.progress import ProgressStart

_PROBE = 64
IndexProgress = ProgressStart  # (description, total) -> advance(n), or None


def cache_dir() -> Path:
    env = os.environ.get("HORM_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "horm"


def _files(ds) -> list[Path]:
    files = getattr(ds, "files", None)
    if files:
        return [Path(f) for f in files]
    p = getattr(ds, "path", None)
    return [Path(p)] if p is not None and Path(p).is_file() else []


def _is_store(ds) -> bool:
    return hasattr(ds, "chunk_blobs")


def _raw(ds, i: int) -> bytes:
    if _is_store(ds):
        c, slot = divmod(i, ds.chunk_size)
        return ds.chunk_blobs(c)[slot]
    return ds.raw_record(i)


def identity(ds) -> str | None:
    """A digest of what the index depends on (None: an in-memory dataset, never cached)."""
    files = _files(ds)
    if not files or not (_is_store(ds) or hasattr(ds, "raw_record")) or len(ds) == 0:
        return None
    h = hashlib.blake2b(digest_size=12)
    for f in files:
        st = f.stat()
        h.update(f"{os.path.realpath(f)}|{st.st_size}|{st.st_mtime_ns}|".encode())
    h.update(f"{len(ds)}|{zlib.crc32(_raw(ds, 0))}|{zlib.crc32(_raw(ds, len(ds) - 1))}".encode())
    return h.hexdigest()


def _cache_path(ds, kind: str) -> Path | None:
    ident = identity(ds)
    if ident is None:
        return None
    return cache_dir() / "index" / f"{_files(ds)[0].name}-{kind}-{ident}.npz"


def _load(path: Path | None, n: int, names: tuple[str, ...]) -> dict | None:
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in names}
    except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
        return None
    first = out[names[0]]
    return out if first.ndim == 1 and len(first) == n else None


def _save(path: Path | None, **arrays) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except OSError:
        pass  # the cache is an optimisation


# --- atom counts -----------------------------------------------------------------------------

def atom_counts(ds, progress: IndexProgress = None) -> np.ndarray:
    """(len(ds),) int32 atom count of every sample (cached; see the module docstring)."""
    n = len(ds)
    path = _cache_path(ds, "natoms")
    got = _load(path, n, ("natoms",))
    if got is not None and np.all((got["natoms"] >= 1) & (got["natoms"] <= MAX_ATOMS)):
        return got["natoms"].astype(np.int32)
    if _is_store(ds):
        natoms = _store_counts(ds, progress)
    elif hasattr(ds, "record_lengths"):
        natoms = _lmdb_counts(ds, progress)
    else:
        natoms = _decoded_counts(ds, range(n), progress)
    natoms = np.asarray(natoms, dtype=np.int32)
    _save(path, natoms=natoms)
    return natoms


def _decoded_counts(ds, positions, progress: IndexProgress, out: np.ndarray | None = None) -> np.ndarray:
    positions = list(positions)
    out = np.zeros(len(ds), dtype=np.int32) if out is None else out
    advance = progress("reading atom counts", len(positions)) if progress and len(positions) > 1000 else None
    count = getattr(ds, "record_atoms", None) or (lambda i: ds[i].natoms)
    for k, i in enumerate(positions):
        out[i] = count(i)
        if advance is not None and k % 1000 == 999:
            advance(1000)
    return out


def _store_counts(ds, progress: IndexProgress) -> np.ndarray:
    """From the store's ``a:`` records when it has them (64 bytes a chunk), else from the msgpack
    header of every sample blob (a store written before those records: every chunk is read)."""
    from horm.data.store_codec import blob_atoms, decode_sample

    if ds.meta.get("atoms_index"):
        return _store_atom_records(ds)
    out = np.zeros(len(ds), dtype=np.int32)
    advance = progress("reading atom counts", ds.n_chunks) if progress and len(ds) > 10_000 else None
    for c in range(ds.n_chunks):
        for slot, blob in enumerate(ds.chunk_blobs(c)):
            i = c * ds.chunk_size + slot
            n = blob_atoms(blob)
            out[i] = n if n else decode_sample(blob, str(ds.path), f"sample {i}").natoms
        if advance is not None:
            advance(1)
    return out


def _store_atom_records(ds) -> np.ndarray:
    """Every ``a:`` record (checksums verified), one per chunk, each the size of its chunk."""
    from horm.data.store_codec import atoms_key, unpack_atoms

    n, k = len(ds), ds.chunk_size
    got = dict(ds.records(b"a:"))
    out = np.zeros(n, dtype=np.int32)
    for c in range(ds.n_chunks):
        where = f"atom counts of chunk {c}"
        v = got.get(atoms_key(c))
        if v is None:
            raise DataError(str(ds.path), "missing atom-count record (store truncated?)", where)
        if isinstance(v, DataError):
            raise v
        a = c * k
        out[a:min(a + k, n)] = unpack_atoms(v, min(a + k, n) - a, str(ds.path), where)
    return out


def _store_field(ds, field: str):
    import msgpack

    def value(i: int) -> str:
        try:
            d = msgpack.unpackb(_raw(ds, i), raw=False)
            return str(d.get(field, "")) if isinstance(d, dict) else ""
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            return ""
    return value


def _lmdb_counts(ds, progress: IndexProgress) -> np.ndarray:
    lengths = ds.record_lengths()
    n = len(lengths)
    rng = np.random.default_rng(0)
    probe = np.unique(rng.choice(n, min(n, _PROBE), replace=False))
    probe_n = np.array([ds.record_atoms(int(i)) for i in probe], dtype=np.float64)
    fit = _length_model(lengths[probe].astype(np.float64), probe_n)
    if fit is None:
        return _decoded_counts(ds, range(n), progress)
    coef, tol = fit
    cand = np.arange(1, MAX_ATOMS + 1, dtype=np.float64)
    pred = np.polyval(coef, cand)
    j = np.clip(np.searchsorted(pred, lengths), 1, len(pred) - 1)  # pred is increasing over the range used
    near = np.where(np.abs(pred[j - 1] - lengths) <= np.abs(pred[j] - lengths), j - 1, j)
    natoms = (near + 1).astype(np.int32)
    off = np.flatnonzero(np.abs(pred[near] - lengths) > tol)
    if len(off):
        _decoded_counts(ds, off.tolist(), progress, natoms)
    return natoms


def _length_model(lengths: np.ndarray, natoms: np.ndarray) -> tuple[np.ndarray, float] | None:
    """(polynomial coefficients, tolerance) of length(N), or None when the probe does not pin it down."""
    if len(np.unique(natoms)) < 4:
        return None
    coef = np.polyfit(natoms, lengths, 2)
    if coef[0] <= 0:
        return None
    if -coef[1] / (2 * coef[0]) >= 1:  # length(N) must increase from N = 1 on
        return None
    resid = np.abs(np.polyval(coef, natoms) - lengths)
    gap = float(np.polyval(coef, 2.0) - np.polyval(coef, 1.0))  # the smallest gap between neighbouring N
    tol = max(4 * float(resid.max()), 16.0)
    if tol > gap / 4:
        return None
    return coef, tol


# --- reactions -------------------------------------------------------------------------------

def reaction_ids(ds, progress: IndexProgress = None) -> tuple[np.ndarray, np.ndarray]:
    """(codes (len(ds),) int64, names): sample i belongs to reaction ``names[codes[i]]``; code −1
    where the sample carries no reaction id. Cached like :func:`atom_counts`."""
    return _label_index(ds, "rxn", progress)


def origin_ids(ds, progress: IndexProgress = None) -> tuple[np.ndarray, np.ndarray]:
    """(codes, names) of each sample's ``origin`` (the sampler stage that made it, e.g. ``ts``),
    as :func:`reaction_ids`. Every sample of a published HORM file has the one origin
    :data:`horm.data.horm_lmdb.ORIGIN`: nothing is read."""
    if hasattr(ds, "record_rxn") and not _is_store(ds):
        from horm.data.horm_lmdb import ORIGIN

        return np.zeros(len(ds), dtype=np.int64), np.array([ORIGIN])
    return _label_index(ds, "origin", progress)


def _label_index(ds, field: str, progress: IndexProgress) -> tuple[np.ndarray, np.ndarray]:
    n = len(ds)
    path = _cache_path(ds, field)
    got = _load(path, n, ("codes", "names"))
    if got is not None and got["codes"].max(initial=-1) < len(got["names"]) and got["codes"].min(initial=-1) >= -1:
        return got["codes"].astype(np.int64), got["names"].astype(str)
    if _is_store(ds):
        value_of = _store_field(ds, field)
    elif field == "rxn" and hasattr(ds, "record_rxn"):
        value_of = ds.record_rxn
    else:
        value_of = lambda i: getattr(ds[i], field)  # noqa: E731
    table: dict[str, int] = {}
    codes = np.full(n, -1, dtype=np.int64)
    what = "reaction ids" if field == "rxn" else f"{field}s"
    advance = progress(f"reading {what}", n) if progress and n > 1000 else None
    for i in range(n):
        r = value_of(i)
        if r:
            codes[i] = table.setdefault(str(r), len(table))
        if advance is not None and i % 1000 == 999:
            advance(1000)
    names = np.array(list(table), dtype=str) if table else np.zeros(0, dtype="<U1")
    _save(path, codes=codes, names=names)
    return codes, names
