"""Training data: open the train/val sets unchanged, split by reaction, fit energy references.

Any source :func:`horm.data.io.open_dataset` understands works as is (a published HORM LMDB
file or directory, a horm store, an xyz file). Without an explicit validation set the
training source is split by reaction (:func:`horm.data.splits.reaction_split`), so no
reaction contributes geometries to both sides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from horm.data.batch import Collater, SampleDataset
from horm.data.formats import LabelKeys
from horm.data.io import open_dataset
from horm.data.plausibility import check_refs, scan_labels
from horm.data.splits import split_mask
from horm.errors import DataError, UsageError
from horm.train.refs import AE_PROBE, ddp_rank

FULL_SCAN = 5_000  # train + val samples up to which every label is checked before step 1 (≤ ~2 s)


@dataclass
class TrainData:
    train: SampleDataset
    val: SampleDataset | None
    atom_ref: dict[int, float]  # per-element reference energies, eV, fitted on ``train``
    natoms_max: int = 0  # atoms of the largest molecule of train and val
    outliers: list[str] = field(default_factory=list)  # samples outside the label bounds kept (allow_outliers)
    notes: list[str] = field(default_factory=list)  # lines for the run's announcement (split fallback, ...)
    train_natoms: np.ndarray | None = None  # atom count of each training sample (the batch budget)
    val_natoms: np.ndarray | None = None

    def close(self) -> None:
        """Close the files behind ``train`` and ``val`` (a store's ``close`` is idempotent, so a
        source they share is fine), so that this process can open them for writing again (e.g.
        the next round of ``horm learn`` labels into them)."""
        for d in (self.train, self.val):
            if d is not None and hasattr(d.source, "close"):
                d.source.close()


def _index_progress():
    """Bars for the one-time index passes, on rank 0 only (:func:`horm.progress.passes`)."""
    from horm.progress import passes

    return passes(ddp_rank() == 0)


def load_train_data(data_cfg, atom_ref: dict[int, float] | None = None, out=None) -> TrainData:
    """Open ``data_cfg.train`` (and ``data_cfg.val``), split if needed, check labels and fit
    references (unless ``atom_ref`` is given: a fine-tuned model keeps its own); :func:`check_labels`.

    ``data_cfg`` is a :class:`horm.train.config.DataSection`; its ``*_key`` fields name the
    label fields of xyz/ASE input (:mod:`horm.data.formats`). Startup does not grow with the data
    (:mod:`horm.data.index`, :mod:`horm.train.refs`); ``out`` is the run folder (reference cache).
    """
    from horm.data.index import atom_counts

    if not data_cfg.train:
        raise UsageError("no training data: pass --data PATH (or data.train=PATH)")
    keys = LabelKeys(data_cfg.energy_key, data_cfg.forces_key, data_cfg.hessian_key)
    src = open_dataset(data_cfg.train, keys)
    if len(src) == 0:
        raise DataError(str(data_cfg.train), "dataset is empty")
    notes: list[str] = []
    with _index_progress() as progress:
        natoms = atom_counts(src, progress)
    val, val_natoms = None, None
    if data_cfg.val:
        val_src = open_dataset(data_cfg.val, keys)
        train_idx = np.arange(len(src))
        val = SampleDataset(val_src)
        with _index_progress() as progress:
            val_natoms = atom_counts(val_src, progress)
    elif data_cfg.val_fraction > 0:
        with _index_progress() as progress:
            mask = split_mask(src, data_cfg.val_fraction, data_cfg.split_seed, notes, str(data_cfg.train), progress,
                              hint="pass data.val=FILE to choose the validation set")
        train_idx = np.flatnonzero(~mask)
        val = SampleDataset(src, np.flatnonzero(mask))
        val_natoms = natoms
    else:
        train_idx = np.arange(len(src))
    if data_cfg.max_train is not None:
        train_idx = train_idx[: data_cfg.max_train]
    if val is not None and data_cfg.max_val is not None:
        val.indices = val.indices[: data_cfg.max_val]
    train = SampleDataset(src, train_idx)
    refs, outliers = check_labels(train, val, data_cfg, atom_ref, out=out, notes=notes)
    tn = natoms[train.indices]
    vn = val_natoms[val.indices] if val is not None and len(val) else None
    big = max(int(tn.max()), int(vn.max()) if vn is not None else 0)
    return TrainData(train=train, val=val, atom_ref=refs, natoms_max=big, outliers=outliers, notes=notes,
                     train_natoms=tn, val_natoms=vn)


def check_labels(train: SampleDataset, val: SampleDataset | None, data_cfg,
                 atom_ref: dict[int, float] | None = None, out=None,
                 notes: list[str] | None = None) -> tuple[dict[int, float], list[str]]:
    """The label check before training, and the references.

    Up to ``FULL_SCAN`` samples in train and val together: every sample is read
    once before step 1 and checked against :mod:`horm.data.plausibility` (impossible labels, NaN/inf
    or |E|/N > 1e7 eV, always refused; outliers unless ``data_cfg.allow_outliers``), a DataError
    naming the first bad sample. Larger splits: the seeded reference subset is read before step 1,
    and every sample is checked as a batch reads it (:class:`LabelGuard`: the same checks, the
    same one line, at the step that reads it). The references are ``atom_ref`` (fine-tuning), the
    cached ones, the file's ``ae`` (:mod:`horm.train.refs`) or a least-squares fit on up to
    ``ref_samples`` training samples (all of them, or a seeded subset). Returns (references, lines
    on the outliers kept).
    """
    from horm.train.refs import cached_refs, refs_key, save_refs

    notes = [] if notes is None else notes
    allow, limit = data_cfg.allow_outliers, data_cfg.ref_samples
    full = len(train) + (len(val) if val is not None else 0) <= FULL_SCAN
    idx = np.arange(len(train))
    if len(train) > limit:
        idx = np.sort(np.random.default_rng(0).choice(len(train), limit, replace=False))
    key = refs_key(train.source, train.indices, limit) if atom_ref is None and not full else None
    got = cached_refs(out, key)
    checked = idx
    if got is not None:
        refs, how, scans = got["atom_ref"], got["how"], []
    else:
        ae = _ae_references(train, idx) if atom_ref is None else None
        checked = idx[:AE_PROBE] if ae is not None and not full else idx  # the ae probe needs no wider read
        scans = [scan_labels(train.source, train.indices if full else train.indices[checked], str(data_cfg.train))]
        if full and val is not None and len(val):
            scans.append(scan_labels(val.source, val.indices, str(data_cfg.val or data_cfg.train)))
        for sc in scans:
            sc.raise_first(allow, "--allow-outliers (data.allow_outliers=true)")
        refs, how = (atom_ref, "init_from's references") if atom_ref is not None else ae or (None, "")
        if refs is None:
            refs = _fit(train, scans[0], idx if full else np.arange(len(idx)), limit)
            how = f"the references fitted on {len(idx)} training samples"
    check_refs(refs, str(data_cfg.train))
    for sc in scans:
        sc.add_referenced(refs, how)
        sc.raise_first(allow, "--allow-outliers (data.allow_outliers=true)")
    if got is None and atom_ref is None and ddp_rank() == 0:
        save_refs(out, key, refs, how)
    if not full:
        guard = LabelGuard(refs, allow, how)
        for d in (train, val):
            if d is not None:
                d.check = guard
        notes.append(f"labels: {len(checked)} of {len(train)} training samples checked before step 1 "
                     f"({'cached' if got else 'the seeded reference subset'}); every sample is checked as it "
                     f"is read; references: {how}")
    return refs, [line for sc in scans for line in sc.outlier_lines()]


def _ae_references(train: SampleDataset, idx: np.ndarray) -> tuple[dict[int, float], str] | None:
    """(references, how) from the file's ``ae`` on the first ``AE_PROBE`` samples of the seeded
    subset, when it pins them down (:func:`horm.train.refs.refs_from_ae`); else None."""
    from horm.train.refs import AE_TOLERANCE, refs_from_ae

    probe = train.indices[idx[:AE_PROBE]]
    got = refs_from_ae(train.source[int(i)] for i in probe)  # stops at the first sample without ae
    if got is None or got[1] > AE_TOLERANCE:
        return None
    return got[0], f"the file's ae field (energy − ae on {len(probe)} samples, residual {got[1]:.2g} eV)"


class LabelGuard:
    """The label checks of one sample as a batch reads it (picklable, for DataLoader workers):
    the problem is attached to the sample and raised in the training process
    (:func:`raise_batch_problems`), as one line naming the file and the sample."""

    def __init__(self, refs: dict[int, float], allow_outliers: bool, how: str):
        self.table = np.full(256, np.nan)
        for z, e in refs.items():
            self.table[int(z)] = e
        self.allow, self.how = allow_outliers, how

    def __call__(self, s, source: str, index: int) -> tuple[str, str, str] | None:
        """(source, sample, problem) of the first failed check, or None."""
        from horm.data.plausibility import REFERENCED_ENERGY_PER_ATOM_MAX, impossible, out_of_bounds, sample_name

        name = sample_name(index, s.key)
        if (p := impossible(s)):
            return source, name, f"impossible label: {p}"
        nums = np.asarray(s.numbers, dtype=np.int64)
        if len(nums) and np.isnan(self.table[nums]).any():
            z = int(nums[np.isnan(self.table[nums])][0])
            return source, name, (f"element Z={z} has no reference energy: the reference fit ({self.how}) held no "
                                  f"Z={z}; raise data.ref_samples")
        if self.allow:
            return None
        p = out_of_bounds(s)
        if p is None and s.energy is not None and len(s.numbers):
            per_atom = abs(float(s.energy) - float(self.table[np.asarray(s.numbers, dtype=np.int64)].sum())) / len(s.numbers)
            if per_atom > REFERENCED_ENERGY_PER_ATOM_MAX:  # NaN (no reference): not checked
                p = (f"|E − Σ ref[Z]|/N = {per_atom:.3g} eV beyond {REFERENCED_ENERGY_PER_ATOM_MAX:g} eV per atom "
                     f"({self.how})")
        return None if p is None else (source, name, f"implausible label: {p} (pass --allow-outliers to use it anyway)")


def raise_batch_problems(batch) -> None:
    """Raise the first label problem :class:`LabelGuard` found in ``batch`` (one DataError line)."""
    problems = getattr(batch, "problems", None)
    if problems:
        src, where, what = problems[0]
        more = f"; {len(problems) - 1} more in this batch" if len(problems) > 1 else ""
        raise DataError(src, what + more, where)


def _fit(train: SampleDataset, scan, positions, max_samples: int) -> dict[int, float]:
    """Per-element energies (eV) by least squares on the scan's ``positions`` (the seeded subset of up
    to ``max_samples`` training samples); every element the scan holds must get one."""
    missing = next((int(p) for p in positions if np.isnan(scan.energy[p])), None)
    if missing is not None:
        hint = getattr(train.source, "label_hint", "")
        raise DataError(str(getattr(train.source, "path", "train")),
                        "sample has no energy label" + (f" ({hint})" if hint else ""), where=f"#{scan.indices[missing]}")
    refs = scan.fit_refs([int(p) for p in positions])
    uncovered = sorted(set(np.unique(scan.numbers).tolist()) - set(refs))
    if uncovered:
        raise UsageError(f"data.ref_samples={max_samples}: the {len(positions)} samples of the reference fit hold no "
                         f"element Z={uncovered[0]}, which the training split has; raise data.ref_samples")
    return refs


def origin_weights(ds: SampleDataset, weights: dict[str, float]) -> np.ndarray | None:
    """Per-sample draw weights from ``{origin prefix: weight}`` (:func:`horm.data.io.origin_matches`;
    the longest matching prefix wins, an unmatched sample weighs 1); None for no weights. The
    origins come from the cached index (:func:`horm.data.index.origin_ids`), not a read of ``ds``."""
    from horm.data.index import origin_ids
    from horm.data.io import origin_matches

    if not weights:
        return None
    by_length = sorted(((str(k).strip().rstrip(":"), float(v)) for k, v in weights.items()), key=lambda kv: -len(kv[0]))
    with _index_progress() as progress:
        codes, names = origin_ids(ds.source, progress)
    table = np.array([next((v for k, v in by_length if origin_matches(str(o), [k])), 1.0) for o in names] + [
        next((v for k, v in by_length if origin_matches("", [k])), 1.0)])
    w = table[codes[ds.indices]]  # code −1: the sample without an origin (last entry)
    if not w.sum() > 0:
        raise DataError(str(getattr(ds.source, "path", "train")), f"data.origin_weights {weights} give every "
                        f"training sample weight 0")
    return w

def make_loader(ds: SampleDataset, batch_size: int, dtype: torch.dtype, shuffle: bool, num_workers: int = 0,
                seed: int = 0, weights: np.ndarray | None = None, natoms: np.ndarray | None = None,
                max_atoms: int | None = None, max_hessian: int | None = None) -> torch.utils.data.DataLoader:
    """Batches of ``ds`` by :class:`horm.data.sampler.BudgetBatchSampler`: at most ``batch_size``
    molecules (and ``max_atoms`` atoms, ``max_hessian`` Hessian entries), shuffled per epoch from
    ``seed``, in order, or (``weights``) ``len(ds)`` draws with replacement, with probability
    proportional to each sample's weight. ``natoms``: the atom count of each sample of ``ds``
    (default: :func:`horm.data.index.atom_counts` of its source). The sampler is
    ``loader.batch_sampler``; a DDP run shards it (:meth:`~BudgetBatchSampler.shard`)."""
    from horm.data.index import atom_counts
    from horm.data.sampler import BudgetBatchSampler

    if natoms is None:
        natoms = atom_counts(ds.source)[ds.indices]
    sampler = BudgetBatchSampler(natoms, batch_size=batch_size, max_atoms=max_atoms, max_hessian=max_hessian,
                                 shuffle=shuffle, seed=seed, weights=weights,
                                 source=str(getattr(ds.source, "path", "data")))
    return torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=Collater(dtype), num_workers=num_workers,
                                       persistent_workers=num_workers > 0)
