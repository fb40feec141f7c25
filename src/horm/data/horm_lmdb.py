"""Read the published HORM LMDB files safely, without torch or torch_geometric.

Each value in those files is a pickled ``torch_geometric.data.Data`` whose tensors are
stored with ``torch._utils._rebuild_tensor_v2(torch.storage._load_from_bytes(b), ...)``;
the bytes ``b`` are a legacy ``torch.save`` stream (pickle protocol 2 with persistent ids,
then raw little-endian storage data). Plain ``pickle.loads`` would execute whatever the file
names, so both pickle layers go through allow-list unpicklers: the PyG classes map to
plain containers, tensor rebuilds map to numpy, and any other global is refused with an
error naming the file, the key and the global.

Layout of a file: keys ``b"0"`` … ``b"{n-1}"`` hold samples, ``b"length"`` a pickled int.
Fields (see ../shared/README.md): pos (N,3) Å, charges (N,) atomic numbers, energy eV,
forces (N,3) eV/Å, hessian flat (3N)² eV/Å², optional ae, rxn, freq, eig_values,
force_constant, one_hot, natoms.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from collections import OrderedDict
from pathlib import Path

import lmdb
import numpy as np

from horm.data.lmdb_util import MapError, acquire_env, check_value_extent, release_env, value_sizes
from horm.data.sample import Sample
from horm.errors import DataError
from horm.safe_pickle import AllowListUnpickler, StateOnly

# --- inner layer: legacy torch.save stream of one storage -------------------------------

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name]).newbyteorder("<")


_INNER_GLOBALS = {("torch", n): _StorageType(n) for n in _STORAGE_DTYPES}
_INNER_GLOBALS[("collections", "OrderedDict")] = OrderedDict


class _InnerUnpickler(AllowListUnpickler):
    allowed = _INNER_GLOBALS

    def __init__(self, f, ctx):
        super().__init__(f, source=ctx[0], where=f"{ctx[1]}, tensor storage")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise self.refuse(f"unexpected persistent id {pid!r:.80}")
        return ("storage", pid[1], str(pid[2]), int(pid[4]))


def _load_storage(data: bytes, ctx) -> np.ndarray:
    """Decode one legacy torch.save storage stream into a flat numpy array."""
    f = io.BytesIO(data)
    try:
        for _ in range(3):  # magic number, protocol version, sys info
            _InnerUnpickler(f, ctx).load()
        root = _InnerUnpickler(f, ctx).load()
        keys = _InnerUnpickler(f, ctx).load()
        if not (isinstance(root, tuple) and root[0] == "storage") or len(keys) != 1:
            raise DataError(ctx[0], where=ctx[1], problem="unsupported tensor storage layout")
        _, stype, _key, numel = root
        (count,) = struct.unpack("<q", f.read(8))
        nbytes = count * stype.dtype.itemsize
        buf = f.read(nbytes)
        if count != numel or len(buf) != nbytes:
            raise DataError(ctx[0], where=ctx[1], problem="truncated tensor storage")
        return np.frombuffer(buf, dtype=stype.dtype).astype(stype.dtype.newbyteorder("="), copy=False)
    except (pickle.UnpicklingError, EOFError, struct.error, IndexError, TypeError) as exc:
        raise DataError(ctx[0], where=ctx[1], problem=f"corrupt tensor storage ({exc})") from None


# --- outer layer: the PyG Data object ---------------------------------------------------


_Container = StateOnly  # stand-in for PyG Data / GlobalStorage: keeps the pickled state, runs no code


class _Marker:
    def __init__(self, *a, **k):
        pass


# Tensor geometry comes from the file, so it is checked before numpy sees it: a view
# past the storage would read this process's memory, a huge stride crashes it, and
# zero strides would let a few bytes expand to gigabytes.
MAX_NDIM = 16
AMPLIFY_CAP = 1  # elements of a tensor <= AMPLIFY_CAP * elements in its storage (min 1)


class _TensorSpec:
    """A tensor rebuild request from the pickle; checked and built once its field is known."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _ints(v, what: str, ctx) -> tuple[int, ...]:
    if not isinstance(v, (tuple, list)) or not all(type(x) is int for x in v):
        raise DataError(ctx[0], where=ctx[1], problem=f"tensor {what} is not a tuple of integers")
    return tuple(v)


def build_tensor(spec: _TensorSpec, ctx) -> np.ndarray:
    """Return the array ``spec`` describes, or raise DataError if it leaves its storage.

    Checks: offset >= 0; every size and stride >= 0; ndim <= MAX_NDIM; the element count
    is at most ``AMPLIFY_CAP * max(len(storage), 1)``; and the last element addressed,
    ``offset + sum((size_i - 1) * stride_i)``, lies inside the storage.
    """
    storage = spec.storage
    if not isinstance(storage, np.ndarray):
        raise DataError(ctx[0], where=ctx[1], problem="tensor without decoded storage")
    if type(spec.offset) is not int:
        raise DataError(ctx[0], where=ctx[1], problem="tensor offset is not an integer")
    size, stride = _ints(spec.size, "size", ctx), _ints(spec.stride, "stride", ctx)
    offset, m = spec.offset, storage.size
    if len(size) != len(stride) or len(size) > MAX_NDIM:
        raise DataError(ctx[0], where=ctx[1], problem=f"tensor has {len(size)} sizes and {len(stride)} strides (at most {MAX_NDIM})")
    if offset < 0 or any(x < 0 for x in size) or any(x < 0 for x in stride):
        raise DataError(ctx[0], where=ctx[1], problem=f"negative tensor offset, size or stride (offset {offset}, size {size}, stride {stride})")
    n = 1
    for x in size:
        n *= x
    if n > AMPLIFY_CAP * max(m, 1):
        raise DataError(ctx[0], where=ctx[1], problem=f"tensor of {n} elements from a storage of {m} (size {size}, stride {stride})")
    if n == 0:
        if offset > m:
            raise DataError(ctx[0], where=ctx[1], problem=f"tensor offset {offset} past its storage of {m} elements")
        return np.zeros(size, dtype=storage.dtype)
    last = offset + sum((x - 1) * st for x, st in zip(size, stride))
    if last >= m:
        raise DataError(ctx[0], where=ctx[1], problem=f"tensor addresses element {last} of a storage of {m} (offset {offset}, "
                              f"size {size}, stride {stride})")
    byte_strides = tuple(st * storage.itemsize for st in stride)
    return np.lib.stride_tricks.as_strided(storage[offset:], size, byte_strides, writeable=False).copy()


def _materialise(v, ctx):
    if isinstance(v, _TensorSpec):
        return build_tensor(v, ctx)
    if isinstance(v, (list, tuple)):
        return type(v)(_materialise(x, ctx) for x in v)
    if isinstance(v, dict):
        return {k: _materialise(x, ctx) for k, x in v.items()}
    return v


def _safe_globals(ctx):
    def load_from_bytes(b):
        return _load_storage(b, ctx)

    def rebuild_tensor_v2(storage, offset, size, stride, *rest):
        return _TensorSpec(storage, offset, size, stride)

    return {
        ("torch_geometric.data.data", "Data"): _Container,
        ("torch_geometric.data.data", "DataEdgeAttr"): _Marker,
        ("torch_geometric.data.data", "DataTensorAttr"): _Marker,
        ("torch_geometric.data.storage", "GlobalStorage"): _Container,
        ("torch_geometric.data.storage", "BaseStorage"): _Container,
        ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor_v2,
        ("torch.storage", "_load_from_bytes"): load_from_bytes,
        ("collections", "OrderedDict"): OrderedDict,
    }


class _OuterUnpickler(AllowListUnpickler):
    def __init__(self, f, ctx):
        super().__init__(f, allowed=_safe_globals(ctx), source=ctx[0], where=ctx[1])

    def persistent_load(self, pid):
        raise self.refuse("refused persistent id in sample pickle")


def safe_loads(data: bytes, source: str = "<bytes>", key: str = "?"):
    """Unpickle one HORM value with the allow-list; returns a plain dict of numpy arrays."""
    ctx = (source, f"key {key}")
    try:
        obj = _OuterUnpickler(io.BytesIO(data), ctx).load()
    except DataError:
        raise
    except Exception as exc:  # malformed pickle of any kind
        raise DataError(source, f"corrupt pickle ({type(exc).__name__}: {exc})", f"key {key}") from None
    if isinstance(obj, int):
        return obj
    if not isinstance(obj, _Container):
        raise DataError(source, f"expected a PyG Data object, got {type(obj).__name__}", f"key {key}")
    store = obj.state.get("_store")
    mapping = store.state.get("_mapping") if isinstance(store, _Container) else obj.state
    if not isinstance(mapping, dict):
        raise DataError(source, "Data object without a field mapping", f"key {key}")
    return {k: _materialise(v, (source, f"key {key}: field {k!s:.40}")) for k, v in mapping.items()}


ORIGIN = "horm"  # the origin of every sample of a published file (they carry none of their own)


def record_to_sample(rec: dict, source: str, key: str) -> Sample:
    """Map one HORM record (dict of arrays) to a validated Sample."""
    where = f"key {key}"
    for need in ("pos", "charges"):
        if need not in rec:
            raise DataError(source, f"missing field {need!r}", where)
    numbers = np.asarray(rec["charges"]).reshape(-1).astype(np.int64)
    pos = np.asarray(rec["pos"])
    n = numbers.size
    hess = rec.get("hessian")
    if hess is not None:
        hess = np.asarray(hess)
        if hess.size != (3 * n) ** 2:
            raise DataError(source, f"Hessian has {hess.size} entries, expected {(3 * n) ** 2} for {n} atoms", where)
        hess = hess.reshape(3 * n, 3 * n)
    extras = {}
    for k in ("ae", "freq", "eig_values", "force_constant"):
        if k in rec and rec[k] is not None:
            extras[k] = np.asarray(rec[k])
    rxn = rec.get("rxn")
    energy = rec.get("energy")
    forces = rec.get("forces")
    s = Sample(
        numbers=numbers,
        pos=pos,
        energy=None if energy is None else float(np.asarray(energy).reshape(-1)[0]),
        forces=None if forces is None else np.asarray(forces).reshape(n, 3),
        hessian=hess,
        rxn="" if rxn is None else str(int(np.asarray(rxn).reshape(-1)[0])),
        origin=ORIGIN,
        key=f"{Path(source).name}:{key}",
        extras=extras,
    )
    return s.validate(source, where)


def _lmdb_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".lmdb" and p.is_file())
        if not files:
            raise DataError(str(path), "directory holds no .lmdb files")
        return files
    if not path.exists():
        raise DataError(str(path), "no such file")
    return [path]


class HormLmdb:
    """Random access over one published HORM ``.lmdb`` file or a directory of them.

    ``len(ds)``, ``ds[i] -> Sample``, iteration. Files are opened read-only without locks,
    so they may sit on read-only media.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.files = _lmdb_files(self.path)
        self._envs: list[lmdb.Environment] = []
        self._lengths: list[int] = []
        self._pid = os.getpid()
        for f in self.files:
            env = acquire_env(f, readonly=True)
            self._envs.append(env)
            self._lengths.append(self._read_length(env, f))
        self._offsets = np.concatenate([[0], np.cumsum(self._lengths)]).astype(np.int64)

    def _env(self, f: int) -> lmdb.Environment:
        """File ``f``'s environment, opened again in a forked child (a DataLoader worker): an LMDB
        environment must not be used across fork()."""
        if self._pid != os.getpid():
            self._envs = [acquire_env(p, readonly=True) for p in self.files]
            self._pid = os.getpid()
        return self._envs[f]

    @staticmethod
    def _read_length(env, f: Path) -> int:
        check_value_extent(f, b"length", "key length")
        try:
            with env.begin() as txn:
                raw = txn.get(b"length")
                if raw is not None:
                    n = safe_loads(raw, str(f), "length")
                    entries = int(env.stat()["entries"])
                    if type(n) is not int or not 0 <= n < entries:
                        raise DataError(str(f), f"bad length record {str(n)[:40]!r} (the file holds {entries} "
                                                "records)", "key length")
                    return n
                return sum(1 for k, _ in txn.cursor() if k.isdigit())
        except lmdb.Error as exc:
            raise DataError(str(f), f"corrupt or truncated LMDB ({exc})") from None

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def locate(self, i: int) -> tuple[int, int]:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for {n} samples")
        f = int(np.searchsorted(self._offsets, i, side="right") - 1)
        return f, i - int(self._offsets[f])

    def raw(self, i: int) -> bytes:
        f, j = self.locate(i)
        check_value_extent(self.files[f], str(j).encode(), f"key {j}")  # no SIGBUS from a damaged page
        try:
            with self._env(f).begin() as txn:
                v = txn.get(str(j).encode())
        except lmdb.Error as exc:
            raise DataError(str(self.files[f]), f"corrupt or truncated LMDB ({exc})", f"key {j}") from None
        if v is None:
            raise DataError(str(self.files[f]), "missing record (file truncated?)", f"key {j}")
        return v

    def record(self, i: int) -> dict:
        f, j = self.locate(i)
        return safe_loads(self.raw(i), str(self.files[f]), str(j))

    raw_record = raw

    def record_atoms(self, i: int) -> int:
        """The atom count of record ``i`` (its ``charges``), decoded and checked like a sample."""
        return self[i].natoms

    def record_rxn(self, i: int) -> str:
        f, j = self.locate(i)
        rxn = safe_loads(self.raw(i), str(self.files[f]), str(j)).get("rxn")
        return "" if rxn is None else str(int(np.asarray(rxn).reshape(-1)[0]))

    def record_lengths(self) -> np.ndarray:
        """(len(self),) byte length of every sample record, from LMDB's leaf pages alone (read with
        pread: no value page is touched, so 1.7 M records cost ~40 MB of reads, not 23 GB)."""
        out = np.full(len(self), -1, dtype=np.int64)
        for f, path in enumerate(self.files):
            base, n = int(self._offsets[f]), self._lengths[f]
            for k, size in value_sizes(path):
                if k.isdigit() and int(k) < n:
                    out[base + int(k)] = size
        if (out < 0).any():
            raise DataError(str(self.path), "missing record (file truncated?)", f"sample {int(np.argmax(out < 0))}")
        return out

    def __getitem__(self, i: int) -> Sample:
        f, j = self.locate(i)
        return record_to_sample(safe_loads(self.raw(i), str(self.files[f]), str(j)), str(self.files[f]), str(j))

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def close(self):
        for f in self.files[: len(self._envs)]:
            release_env(f)
        self._envs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def is_horm_lmdb(path: str | os.PathLike) -> bool:
    """True if ``path`` looks like a published HORM file (or a directory of them)."""
    p = Path(path)
    try:
        f = _lmdb_files(p)[0]
        env = acquire_env(f, readonly=None)
    except MapError:
        raise  # not a verdict on the file
    except DataError:
        return False
    try:
        with env.begin() as txn:
            ok = txn.get(b"length") is not None or txn.get(b"0") is not None
            return ok and txn.get(b"__meta__") is None
    except lmdb.Error:
        return False
    finally:
        release_env(f)
