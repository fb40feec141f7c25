"""Convert any readable dataset (HORM LMDB, horm store, xyz/extxyz/.traj/ASE .db) into a horm
store (:func:`convert`), or export one to extxyz/xyz, ``.traj`` or ASE ``.db`` (:func:`export`).

Writes in transactions of ``batch`` samples, so a killed conversion keeps every batch
it committed; re-running with ``resume=True`` skips samples whose key is already stored. A
failed write (a full disk: one line that says so) rolls its transaction back; a new store that
got no sample at all is then removed, never left empty for ``verify`` to call ok.
"""

from __future__ import annotations

import os
from pathlib import Path

from horm.data.formats import LabelKeys, check_store_path, export_samples
from horm.data.lmdb_util import remove_lmdb
from horm.data.io import level_of_theory, open_dataset
from horm.data.provenance import check_append, label_provenance, store_provenance
from horm.data.store import HessianStore
from horm.errors import UsageError
from horm.progress import progress_bar


def source_provenance(ds) -> dict:
    """Level of theory, engine and engine settings of a dataset (engine: only stores know)."""
    meta = getattr(ds, "meta", None)
    return store_provenance(meta) if meta else label_provenance(level_of_theory(ds))


def export(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False,
           keys: LabelKeys | None = None, show_progress: bool = True) -> int:
    """Write every sample of ``src`` to the ASE file ``dst`` (extxyz/xyz, ``.traj``, ``.db``):
    energy and forces as calculator results, the Hessian flattened to 9N² floats under
    ``hessian`` (key names: :mod:`horm.data.formats`). Returns the number of structures."""
    ds = open_dataset(src, keys)
    n = len(ds)
    with progress_bar(disable=not show_progress) as prog:
        task = prog.add_task(f"export {Path(src).name}", total=n)

        def samples():
            for i in range(n):
                s = ds[i]
                s.key = s.key or f"{Path(src).name}:{i}"
                yield s
                prog.advance(task)

        return export_samples(samples(), dst, overwrite=overwrite)


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False,
            resume: bool = False, batch: int = 256, show_progress: bool = True,
            keys: LabelKeys | None = None, allow_mixed: bool = False, allow_outliers: bool = False) -> HessianStore:
    """Copy every sample of ``src`` into the store ``dst``; returns the (open) store.
    ``dst`` must not carry an xyz-family or ASE extension (use :func:`export` for those).

    With ``resume`` the samples are appended to an existing ``dst``; labels of another
    level of theory, engine or settings are refused unless ``allow_mixed``. A label outside
    the bounds of :mod:`horm.data.plausibility` stops the copy at that sample, unless ``allow_outliers``.
    """
    dst = check_store_path(dst)
    ds = open_dataset(src, keys)
    prov = source_provenance(ds)
    created = not (dst.exists() and resume)
    if not created:
        store = HessianStore.open(dst, readonly=False)
        try:
            check_append(store, prov, allow_mixed)
        except BaseException:
            store.close()
            raise
    else:
        if dst.exists() and not overwrite:
            raise UsageError(f"{dst}: destination exists (use --overwrite or --resume)")
        extra = {k: prov[k] for k in ("engine", "engine_settings") if prov[k] is not None}
        store = HessianStore.create(dst, prov["level_of_theory"], overwrite=overwrite,
                                    source=str(Path(src).resolve()), converted_from=type(ds).__name__, **extra)
    try:
        _copy_into(store, ds, src, resume, batch, show_progress, allow_outliers)
    except BaseException:
        drop_if_empty(store, created)  # a new store that got nothing is removed; committed batches stay
        raise
    return store


def drop_if_empty(store: HessianStore, created: bool) -> None:
    """After a failed run: close ``store`` and, when this run created it and nothing was committed
    (no sample, no failure row), delete it, so that no empty store is left for ``verify`` to call ok."""
    empty = int(store.meta.get("count", 0)) == 0 and int(store.meta.get("n_failures", 0)) == 0
    path = store.path
    store.close()
    if created and empty:
        remove_lmdb(path)


def _copy_into(store: HessianStore, ds, src, resume: bool, batch: int, show_progress: bool,
               allow_outliers: bool) -> None:
    have = store.keys() if resume else set()
    n = len(ds)
    pending = []
    with progress_bar(disable=not show_progress) as prog:
        task = prog.add_task(f"convert {Path(src).name}", total=n)
        for i in range(n):
            s = ds[i]
            if not s.key:
                s.key = f"{Path(src).name}:{i}"
            if s.key not in have:
                pending.append(s)
            if len(pending) >= batch:
                store.extend(pending, allow_outliers=allow_outliers)
                pending = []
            prog.advance(task)
        if pending:
            store.extend(pending, allow_outliers=allow_outliers)
