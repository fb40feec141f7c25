"""Per-element reference energies for training, at any data size: fitted on a seeded subset, or
read from the file's own ``ae`` field, and cached beside the run.

- **ae.** HORM's records carry ``ae = energy − Σ ref[Z]``. When the probed training samples all
  carry it, ``energy − ae`` is solved for the references on ``AE_PROBE`` of them (exactly: the
  residual is float32 rounding, checked below ``AE_TOLERANCE``), so the model learns HORM's own
  target. A residual above it means ``ae`` is not a per-element offset: the fit is used.
- **fit.** Least squares on up to ``data.ref_samples`` training samples (all of them, or a seeded
  subset), after their labels passed :mod:`horm.data.plausibility`.
- **Cache.** ``<run>/atom_ref.json`` holds the references with the key of what they depend on
  (the training file's identity, the training selection, ``ref_samples``), and a copy goes to the
  cache directory (:func:`horm.data.index.cache_dir`) so that a new run on the same file starts
  warm. Rank 0 computes; a DDP rank > 0 waits for rank 0's file and reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from horm.data.refs import fit_atom_references

AE_PROBE = 256
AE_TOLERANCE = 0.05  # eV: float32 energies of ~1e4 eV round to ~1e-3 eV
RANK_WAIT_S = 600.0


def ddp_rank() -> int:
    """This process's rank as a launcher set it (0 when none did)."""
    for v in ("RANK", "LOCAL_RANK"):
        if os.environ.get(v, "") not in ("", "0"):
            return int(os.environ[v])
    return 0


def refs_key(source, indices: np.ndarray, ref_samples: int) -> str | None:
    """What the references depend on; None when the source has no file identity (no cache)."""
    from horm.data.index import identity

    ident = identity(source)
    if ident is None:
        return None
    h = hashlib.blake2b(digest_size=12)
    h.update(f"{ident}|{ref_samples}|{len(indices)}|v1|".encode())
    h.update(np.ascontiguousarray(indices, dtype=np.int64).tobytes())
    return h.hexdigest()


def _read(path: Path, key: str) -> dict | None:
    try:
        d = json.loads(path.read_text())
        if not isinstance(d, dict) or d.get("key") != key or not isinstance(d.get("atom_ref"), dict):
            return None
        refs = {int(z): float(e) for z, e in d["atom_ref"].items()}
        if not refs or not all(np.isfinite(list(refs.values()))):
            return None
        return {"atom_ref": refs, "how": str(d.get("how", "cached"))}
    except (OSError, ValueError, TypeError):
        return None


def _global_path(key: str) -> Path:
    from horm.data.index import cache_dir

    return cache_dir() / "refs" / f"{key}.json"


def cached_refs(out: str | os.PathLike | None, key: str | None) -> dict | None:
    """The cached references for ``key`` (the run's file first, then the cache directory); a DDP
    rank > 0 waits up to ``RANK_WAIT_S`` for rank 0 to write the run's file."""
    if key is None:
        return None
    run_file = Path(out) / "atom_ref.json" if out else None
    deadline = time.monotonic() + (RANK_WAIT_S if ddp_rank() > 0 and run_file is not None else 0.0)
    while True:
        for p in ([run_file] if run_file else []) + [_global_path(key)]:
            got = _read(p, key) if p.is_file() else None
            if got is not None:
                return got
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.5)


def save_refs(out: str | os.PathLike | None, key: str | None, refs: dict[int, float], how: str) -> None:
    """Write the references beside the run and into the cache directory (the latter best effort)."""
    if key is None and out is None:
        return
    text = json.dumps({"key": key, "how": how, "atom_ref": {str(z): e for z, e in sorted(refs.items())}}, indent=1)
    targets = ([Path(out) / "atom_ref.json"] if out else []) + ([_global_path(key)] if key else [])
    for k, p in enumerate(targets):
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, p)
        except OSError:
            if k == 0 and out:
                raise


def refs_from_ae(samples) -> tuple[dict[int, float], float] | None:
    """(references, largest residual in eV) from ``energy − ae`` of ``samples``; None unless every
    one carries a finite energy and a scalar ``ae``."""
    nums, target = [], []
    for s in samples:
        ae = s.extras.get("ae")
        if s.energy is None or ae is None or np.size(ae) != 1:
            return None
        nums.append(np.asarray(s.numbers))
        target.append(float(s.energy) - float(np.asarray(ae).reshape(())))
    if not nums or not np.all(np.isfinite(target)):
        return None
    from horm.data.refs import composition_matrix

    elements = sorted({int(z) for n in nums for z in n})
    if np.linalg.matrix_rank(composition_matrix(nums, elements)) < len(elements):
        return None  # the compositions do not pin every element down
    refs = fit_atom_references(nums, target)
    pred = np.array([sum(refs[int(z)] for z in n) for n in nums])
    return refs, float(np.abs(pred - np.asarray(target)).max())
