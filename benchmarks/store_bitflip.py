"""Single-bit flips in a horm store: is every change caught? Checksummed vs old layout.

Usage: python benchmarks/store_bitflip.py [HORM_LMDB] [--flips N] [--seed S]

Converts the HORM sample into a store twice (schema 2 with checksums, schema 1 without),
then for each of N random bit positions makes a copy with that one bit flipped and
(in a forked child, so a crash is counted, not fatal) reads everything: metadata, the
index, the failures table and every sample, compared bit-for-bit with the originals,
then runs ``verify_store``. Each copy lands in exactly one class:

  unchanged   every read returned the original values, verify ok (a dead byte was hit)
  detected    some read raised DataError (other reads original), and verify reported it
  verify-only every read original, but verify reported the damage (e.g. an index row)
  SILENT      some read returned different values without an error
  MISSED      a read raised DataError but verify said ok
  CRASH       another exception or a signal

Zero SILENT, MISSED and CRASH is the claim for the checksummed store.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from horm.data.convert import convert
from horm.data.verify import verify_store
from horm.data.store import HessianStore
from horm.errors import DataError

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "horm_sample_100.lmdb"
CLASSES = ("unchanged", "detected", "verify-only", "SILENT", "MISSED", "CRASH")
_FIELDS = ("numbers", "pos", "energy", "forces", "hessian", "charge", "multiplicity", "rxn", "origin", "key")


def _snapshot(path: Path):
    """Everything a reader can see, as comparable Python values; DataError propagates."""
    with HessianStore.open(path) as st:
        meta = {k: v for k, v in st.meta.items()}
        samples = []
        for i in range(len(st)):
            s = st[i]
            samples.append(tuple(np.asarray(getattr(s, f)).tobytes() if f in ("numbers", "pos", "forces", "hessian")
                                 else getattr(s, f) for f in _FIELDS)
                           + tuple((k, np.asarray(v).tobytes()) for k, v in sorted(s.extras.items())))
        return meta, sorted(st.keys()), st.failures(), samples


def _classify(path: Path, original) -> str:
    try:
        errored = False
        try:
            seen = _snapshot(path)
        except DataError:
            errored, seen = True, None
        if seen is not None and seen != original:
            return "SILENT"
        ok = verify_store(path).ok
    except Exception as exc:  # noqa: BLE001 - counted, reported
        print(f"  {type(exc).__name__}: {exc}"[:200], file=sys.stderr)
        return "CRASH"
    if errored:
        return "MISSED" if ok else "detected"
    return "unchanged" if ok else "verify-only"


def _classify_in_child(path: Path, original) -> str:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            os.write(w, _classify(path, original).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        result = f.read().decode()
    _, status = os.waitpid(pid, 0)
    return result if result in CLASSES and os.WIFEXITED(status) else "CRASH"


def flip_experiment(store: Path, flips: int, seed: int, workdir: Path) -> Counter:
    original = _snapshot(store)
    data = store.read_bytes()
    rng = np.random.default_rng(seed)
    counts: Counter = Counter()
    for n in range(flips):
        pos = int(rng.integers(len(data) * 8))
        damaged = bytearray(data)
        damaged[pos // 8] ^= 1 << (pos % 8)
        copy = workdir / f"flip{n}.hstore"
        copy.write_bytes(bytes(damaged))
        counts[_classify_in_child(copy, original)] += 1
        copy.unlink()
        Path(str(copy) + "-lock").unlink(missing_ok=True)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("horm_lmdb", nargs="?", default=str(DEFAULT))
    ap.add_argument("--flips", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                    help="also flip bits in an old-layout store (no checksums)")
    args = ap.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        layouts = {"checksummed (schema 2)": True, "no checksums (schema 1)": False}
        for name, sealed in layouts.items():
            if not sealed and not args.baseline:
                continue
            src = d / f"{int(sealed)}.hstore"
            HessianStore.create(src, "ωB97X/6-31G(d) (published HORM)", checksums=sealed).close()
            convert(args.horm_lmdb, src, resume=True, show_progress=False).close()
            shutil.copy(src, d / "orig.hstore")
            rows[name] = flip_experiment(d / "orig.hstore", args.flips, args.seed, d)
    print(f"{args.flips} single-bit flips, one copy each, seed {args.seed}")
    print(f"{'layout':<26}" + "".join(f"{c:>12}" for c in CLASSES))
    for name, counts in rows.items():
        print(f"{name:<26}" + "".join(f"{counts[c]:>12}" for c in CLASSES))


if __name__ == "__main__":
    main()
