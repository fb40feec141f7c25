"""Write N synthetic samples in the published HORM LMDB format, for scale and GPU tests.

    python benchmarks/make_synthetic_horm.py N OUT.lmdb [--source ../shared/data/horm_sample_100.lmdb]
        [--seed 0] [--sigma 0.02] [--per-reaction 20] [--overwrite]

Every record is a real source record whose geometry is displaced by Gaussian noise (``--sigma``
Å per Cartesian component, seeded) and whose labels follow to first order in the displacement
d (flattened, length 3n)::

    pos'    = pos + d
    forces' = F - H d
    energy' = E - F·d + ½ dᵀ H d        ae' = ae + (energy' - E)
    hessian' = H                         (kept byte for byte)

Layout: keys ``b"0"`` … ``b"{N-1}"`` and ``b"length"`` = pickled int N, as in the published
files. Each record is its source record's pickle with the little-endian storage bytes of pos,
forces, energy, ae and rxn overwritten in place (the same lengths), so the pickle layout,
dtypes, field order and even the storage keys are those of the real record; only the numbers
differ. The byte offsets are found once per source record by walking its pickle opcodes
(``pickletools.genops``) and checked against the safe reader's decoding of that record.

Reactions: samples come in blocks of ``--per-reaction`` consecutive keys; block b perturbs
source record ``b mod S`` (S source records in use) and gets the reaction id
``rxn_source * 10**9 + b``, so every synthetic reaction holds one composition and
``--per-reaction`` samples. (In the shared 100-sample file every record has ``rxn == 1``, so
the source's own reaction ids would group nothing.)

Writes go to a fresh temporary file beside OUT in transactions of 1,000 records and are
renamed to OUT at the end, so a killed run never leaves a half file under OUT's name. A few
records are decoded back with :class:`horm.data.horm_lmdb.HormLmdb` before the rename.
"""

from __future__ import annotations

import argparse
import math
import os
import pickletools
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import lmdb
import numpy as np

from horm.progress import progress_bar
from horm.data.horm_lmdb import HormLmdb, record_to_sample, safe_loads
from horm.errors import DataError, HormError
from horm.safe_io import check_free_space, disk_full

SHARED_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "horm_sample_100.lmdb"
RXN_BASE = 10**9  # synthetic rxn = rxn_source * RXN_BASE + block index
TXN_RECORDS = 1000  # records per LMDB write transaction
MAX_SOURCES = 1000  # source records held as templates (evenly spread over a larger source)
PAGE = 4096  # LMDB page size; a large value takes ceil((16 + len) / PAGE) overflow pages
NODE_BYTES = 64  # per record: leaf node (header, key, overflow page number) and branch pages, generously
MIN_MAP = 64 << 20
_BYTES_OPS = {"BINBYTES": 4, "SHORT_BINBYTES": 1, "BINBYTES8": 8}  # opcode -> width of its length field
PATCHED = ("pos", "forces", "energy", "ae", "rxn")


@dataclass
class Template:
    """One source record: its pickle and where the patched fields' storage bytes sit in it."""

    raw: np.ndarray  # uint8 [L] | the record's pickle bytes
    key: str  # source key
    slots: dict  # field -> (byte offset, little-endian dtype, element count)
    pos: np.ndarray  # float64 [3n] | Å, flattened (atom, xyz)
    forces: np.ndarray  # float64 [3n] | eV/Å
    hessian: np.ndarray  # float64 [3n, 3n] | eV/Å²
    energy: float  # eV
    ae: float | None  # eV, when the record has it
    rxn: int

    @property
    def natoms(self) -> int:
        return self.pos.size // 3


def _storage_payloads(raw: bytes, source: str, key: str) -> list[tuple[int, int]]:
    """(start, end) byte ranges of every bytes literal in the outer pickle, in stream order."""
    out = []
    try:
        for op, arg, pos in pickletools.genops(raw):
            if op.name in _BYTES_OPS:
                start = pos + 1 + _BYTES_OPS[op.name]
                out.append((start, start + len(arg)))
    except Exception as exc:  # noqa: BLE001  (any malformed opcode stream)
        raise DataError(source, f"cannot walk the pickle ({type(exc).__name__}: {exc})", f"key {key}") from None
    return out


def find_slots(raw: bytes, rec: dict, source: str, key: str) -> dict:
    """Field -> (offset, dtype, count) of the raw storage data of each tensor field of ``rec``.

    Tensor fields appear in the pickle in mapping order, each with its own ``_load_from_bytes``
    literal whose stream ends with an int64 element count and the storage data. A field is
    accepted only when that count is its element count and those bytes are its decoded values
    (one contiguous tensor over its whole storage); anything else is refused."""
    fields = [k for k, v in rec.items() if isinstance(v, np.ndarray)]
    payloads = _storage_payloads(raw, source, key)
    if len(payloads) != len(fields):
        raise DataError(source, f"{len(fields)} tensor fields but {len(payloads)} storage literals (shared "
                                "storages are not supported)", f"key {key}")
    slots = {}
    for k, (start, end) in zip(fields, payloads):
        arr = rec[k]
        dt = arr.dtype.newbyteorder("<")
        off = end - arr.size * dt.itemsize
        ok = off - 8 >= start and raw[off - 8:off] == struct.pack("<q", arr.size) \
            and raw[off:end] == np.ascontiguousarray(arr, dtype=dt).tobytes()
        if not ok:
            raise DataError(source, f"field {k!s:.40}: storage is not one contiguous tensor", f"key {key}")
        slots[k] = (off, dt, arr.size)
    return slots


def _scalar(rec: dict, k: str, kind: str, source: str, key: str):
    v = rec.get(k)
    if not isinstance(v, np.ndarray) or v.size != 1 or v.dtype.kind not in kind:
        raise DataError(source, f"field {k} is not a single {'integer' if kind == 'iu' else 'float'}", f"key {key}")
    return v.reshape(-1)[0].item()


def load_template(ds: HormLmdb, i: int) -> Template:
    """Decode source record ``i`` with the safe reader and locate its patchable fields."""
    src, key = str(ds.files[ds.locate(i)[0]]), str(ds.locate(i)[1])
    raw = ds.raw(i)
    rec = safe_loads(raw, src, key)
    s = record_to_sample(rec, src, key)
    for need in ("energy", "forces", "hessian", "rxn"):
        if rec.get(need) is None:
            raise DataError(src, f"missing field {need!r} (a synthetic sample needs it)", f"key {key}")
    for k in ("pos", "forces"):
        if rec[k].dtype.kind != "f":
            raise DataError(src, f"field {k} has dtype {rec[k].dtype}, expected a float type", f"key {key}")
    slots = find_slots(raw, rec, src, key)
    rxn = _scalar(rec, "rxn", "iu", src, key)
    if not 0 <= rxn < (2**63 - 1) // RXN_BASE - 1:
        raise DataError(src, f"rxn {rxn} out of range for synthetic ids (0 … {(2**63 - 1) // RXN_BASE - 2})",
                        f"key {key}")
    ae = _scalar(rec, "ae", "f", src, key) if "ae" in rec else None
    return Template(raw=np.frombuffer(raw, dtype=np.uint8), key=key,
                    slots={k: v for k, v in slots.items() if k in PATCHED},
                    pos=s.pos.astype(np.float64).reshape(-1), forces=s.forces.astype(np.float64).reshape(-1),
                    hessian=s.hessian.astype(np.float64), energy=_scalar(rec, "energy", "f", src, key), ae=ae,
                    rxn=int(rxn))


def _put(out: np.ndarray, slot, values) -> None:
    off, dt, count = slot
    v = np.ascontiguousarray(values, dtype=dt).reshape(len(out), count)
    out[:, off:off + count * dt.itemsize] = v.view(np.uint8).reshape(len(out), -1)


def perturb(t: Template, d: np.ndarray, rxn_id: int) -> tuple[np.ndarray, dict]:
    """Records (uint8 [g, L]) for the displacements ``d`` [g, 3n] and the values written into them."""
    hd = d @ t.hessian.T  # row k: H d_k
    de = -d @ t.forces + 0.5 * np.einsum("ij,ij->i", d, hd)
    vals = {"pos": t.pos + d, "forces": t.forces - hd, "energy": t.energy + de,
            "rxn": np.full(len(d), rxn_id, dtype=np.int64)}
    if t.ae is not None:
        vals["ae"] = t.ae + de
    out = np.tile(t.raw, (len(d), 1))
    for k, v in vals.items():
        if k in t.slots:
            _put(out, t.slots[k], v)
    return out, vals


def estimate_bytes(templates: list[Template], n: int) -> int:
    """File size N samples need: overflow pages of the mean record, node space and slack."""
    sizes = np.array([t.raw.size for t in templates], dtype=np.float64)
    pages = np.ceil((sizes + 16) / PAGE) * PAGE
    per = max(float(pages.mean()), 1.3 * float(sizes.mean()))
    return int(n * (per + NODE_BYTES)) + (1 << 20)


def _check_output(out: Path, overwrite: bool) -> None:
    if out.is_dir():
        raise DataError(str(out), "is a directory; OUT must be a single .lmdb file")
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise DataError(str(out), "exists; pass --overwrite to replace it")


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move the finished file to ``out``: never clobbering without ``overwrite`` (a hard link fails on
    an existing name), atomically with it."""
    if overwrite:
        os.replace(tmp, out)
        return
    try:
        os.link(tmp, out)
    except FileExistsError:
        raise DataError(str(out), "exists; pass --overwrite to replace it") from None
    os.unlink(tmp)


@dataclass
class Result:
    path: Path
    n: int
    seconds: float
    bytes: int
    estimate: int

    def summary(self) -> str:
        return (f"{self.n} samples -> {self.path} in {self.seconds:.1f} s: {self.n / self.seconds:.0f} samples/s, "
                f"{self.bytes / self.n:.0f} bytes/sample ({self.bytes / 2**20:.1f} MiB; estimate "
                f"{self.estimate / 2**20:.1f} MiB)")


def _load_templates(ds: HormLmdb) -> list[Template]:
    if len(ds) == 0:
        raise DataError(str(ds.path), "holds no samples")
    idx = np.unique(np.linspace(0, len(ds) - 1, min(len(ds), MAX_SOURCES)).round().astype(int))
    return [load_template(ds, int(i)) for i in idx]


def _write_all(env, templates, n: int, per: int, sigma: float, seed: int, checks: set, show: bool) -> dict:
    """Stream every block into ``env``; returns {index: written values} for the indices in ``checks``."""
    rng = np.random.default_rng(seed)
    kept, s_count = {}, len(templates)
    with progress_bar(disable=not show) as prog:
        task = prog.add_task("synthetic HORM", total=n)
        txn, in_txn = env.begin(write=True), 0
        try:
            for b in range(math.ceil(n / per)):
                t, i0 = templates[b % s_count], b * per
                g = min(per, n - i0)
                recs, vals = perturb(t, sigma * rng.standard_normal((g, t.pos.size)), t.rxn * RXN_BASE + b)
                for j in range(g):
                    txn.put(str(i0 + j).encode(), recs[j].tobytes())
                    if i0 + j in checks:
                        kept[i0 + j] = (t, {k: np.asarray(v)[j] for k, v in vals.items()})
                in_txn += g
                if in_txn >= TXN_RECORDS:
                    txn.commit()
                    txn, in_txn = env.begin(write=True), 0
                prog.advance(task, g)
            txn.put(b"length", _pickled_int(n))
            txn.commit()
        except BaseException:
            txn.abort()
            raise
    return kept


def _pickled_int(n: int) -> bytes:
    import pickle

    return pickle.dumps(int(n), protocol=4)  # the published b"length" is exactly this for its 100


def _verify(path: Path, kept: dict, n: int) -> None:
    """Decode the kept records with the safe reader; they must hold exactly what was written."""
    with HormLmdb(path) as ds:
        if len(ds) != n:
            raise DataError(str(path), f"length record says {len(ds)}, wrote {n}")
        for i, (t, vals) in kept.items():
            rec = ds.record(i)
            for k, v in vals.items():
                want = np.asarray(v, dtype=t.slots[k][1]).reshape(-1) if k in t.slots else None
                if want is not None and not np.array_equal(rec[k].reshape(-1), want):
                    raise DataError(str(path), f"field {k} does not read back as written", f"key {i}")
            if rec["hessian"].size != t.hessian.size:
                raise DataError(str(path), "Hessian does not read back", f"key {i}")


def make_synthetic(n: int, out: str | os.PathLike, source: str | os.PathLike = SHARED_SAMPLE, *, seed: int = 0,
                   sigma: float = 0.02, per_reaction: int = 20, overwrite: bool = False,
                   show_progress: bool = True) -> Result:
    """Write ``n`` synthetic samples to ``out`` (see the module docstring); returns sizes and timing.

    Refused with one DataError line: an existing ``out`` without ``overwrite``, too little free
    disk, or a source record this writer cannot patch."""
    if n < 1 or per_reaction < 1 or not sigma >= 0:
        raise ValueError(f"need n >= 1, per_reaction >= 1, sigma >= 0 (got {n}, {per_reaction}, {sigma})")
    out = Path(out)
    _check_output(out, overwrite)
    t0 = time.perf_counter()
    with HormLmdb(source) as ds:
        templates = _load_templates(ds)
    est = estimate_bytes(templates, n)
    out.parent.mkdir(parents=True, exist_ok=True)
    check_free_space(out.parent, est, f"writing {n} synthetic samples")
    checks = {0, n - 1, *np.linspace(0, n - 1, 8).round().astype(int).tolist()}
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")  # O_EXCL: no planted link
    os.fchmod(fd, 0o644)
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            env = lmdb.open(str(tmp), subdir=False, lock=False, map_size=max(2 * est, MIN_MAP), readahead=False,
                            meminit=False, sync=False)
            try:
                kept = _write_all(env, templates, n, per_reaction, sigma, seed, checks, show_progress)
                env.sync(True)
            finally:
                env.close()
        except lmdb.Error as exc:
            full = disk_full(out.parent, exc)
            raise DataError(str(out), f"{'no space left on device' if full else 'LMDB write failed'} ({exc}); "
                                      "nothing was written") from None
        _verify(tmp, kept, n)
        _publish(tmp, out, overwrite)
    finally:
        tmp.unlink(missing_ok=True)
    return Result(out, n, time.perf_counter() - t0, out.stat().st_size, est)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int, help="number of samples")
    ap.add_argument("out", type=Path, help="output .lmdb file")
    ap.add_argument("--source", type=Path, default=SHARED_SAMPLE,
                    help="published HORM file whose records are perturbed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sigma", type=float, default=0.02, help="Gaussian displacement per component, Å")
    ap.add_argument("--per-reaction", type=int, default=20, help="samples per synthetic reaction id")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    if a.n < 1:
        ap.error(f"N must be >= 1, got {a.n}")
    if a.per_reaction < 1:
        ap.error(f"--per-reaction must be >= 1, got {a.per_reaction}")
    if not 0 <= a.sigma <= 1:
        ap.error(f"--sigma must be in [0, 1] Å, got {a.sigma}")
    try:
        res = make_synthetic(a.n, a.out, a.source, seed=a.seed, sigma=a.sigma, per_reaction=a.per_reaction,
                             overwrite=a.overwrite, show_progress=not a.quiet)
    except HormError as exc:
        print(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, file=sys.stderr)
        return 1
    print(res.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
