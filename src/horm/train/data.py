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
from horm.data.splits import reaction_split, sample_group
from horm.errors import DataError, UsageError


@dataclass
class TrainData:
    train: SampleDataset
    val: SampleDataset | None
    atom_ref: dict[int, float]  # per-element reference energies, eV, fitted on ``train``
    natoms_max: int = 0  # atoms of the largest molecule of train and val
    outliers: list[str] = field(default_factory=list)  # samples outside the label bounds kept (allow_outliers)

    def close(self) -> None:
        """Close the files behind ``train`` and ``val`` (a store's ``close`` is idempotent, so a
        source they share is fine), so that this process can open them for writing again (e.g.
        the next round of ``horm learn`` labels into them)."""
        for d in (self.train, self.val):
            if d is not None and hasattr(d.source, "close"):
                d.source.close()


def _groups(source) -> list[str]:
    return [sample_group(source[i], i) for i in range(len(source))]


def load_train_data(data_cfg, atom_ref: dict[int, float] | None = None) -> TrainData:
    """Open ``data_cfg.train`` (and ``data_cfg.val``), split if needed, check every label and fit
    references (unless ``atom_ref`` is given: a fine-tuned model keeps its own); :func:`check_labels`.

    ``data_cfg`` is a :class:`horm.train.config.DataSection`; its ``*_key`` fields name the
    label fields of xyz/ASE input (:mod:`horm.data.formats`).
    """
    if not data_cfg.train:
        raise UsageError("no training data: pass --data PATH (or data.train=PATH)")
    keys = LabelKeys(data_cfg.energy_key, data_cfg.forces_key, data_cfg.hessian_key)
    src = open_dataset(data_cfg.train, keys)
    if len(src) == 0:
        raise DataError(str(data_cfg.train), "dataset is empty")
    if data_cfg.val:
        val_src = open_dataset(data_cfg.val, keys)
        train_idx = list(range(len(src)))
        val = SampleDataset(val_src, list(range(len(val_src))))
    elif data_cfg.val_fraction > 0:
        mask = reaction_split(_groups(src), data_cfg.val_fraction, data_cfg.split_seed)
        if mask.all() or not mask.any():  # too few reactions to split: fall back to samples
            rng = np.random.default_rng(data_cfg.split_seed)
            mask = rng.random(len(src)) < data_cfg.val_fraction
            mask[rng.integers(len(src))] = True
            if mask.all():
                mask[0] = False
        train_idx = np.flatnonzero(~mask).tolist()
        val = SampleDataset(src, np.flatnonzero(mask).tolist())
    else:
        train_idx, val = list(range(len(src))), None
    if data_cfg.max_train is not None:
        train_idx = train_idx[: data_cfg.max_train]
    if val is not None and data_cfg.max_val is not None:
        val.indices = val.indices[: data_cfg.max_val]
    train = SampleDataset(src, train_idx)
    refs, natoms_max, outliers = check_labels(train, val, data_cfg, atom_ref)
    return TrainData(train=train, val=val, atom_ref=refs, natoms_max=natoms_max, outliers=outliers)


def check_labels(train: SampleDataset, val: SampleDataset | None, data_cfg,
                 atom_ref: dict[int, float] | None = None) -> tuple[dict[int, float], int, list[str]]:
    """The read check before training: one pass over every training and validation sample.

    Labels are checked against :mod:`horm.data.plausibility` (impossible ones, NaN/inf or |E|/N > 1e7 eV,
    always refused; outliers unless ``data_cfg.allow_outliers``), a DataError naming the first bad
    sample. The references
    are fitted by least squares on up to ``data_cfg.ref_samples`` training samples (the same draw as
    always: all of them, or a seeded subset), or are ``atom_ref`` (fine-tuning); then |E − Σ ref|/N is
    checked on both splits. Returns (references, largest atom count, lines on the outliers kept).
    """
    allow = data_cfg.allow_outliers
    scans = [scan_labels(train.source, train.indices, str(data_cfg.train))]
    if val is not None and len(val):
        scans.append(scan_labels(val.source, val.indices, str(data_cfg.val or data_cfg.train)))
    for sc in scans:
        sc.raise_first(allow, "--allow-outliers (data.allow_outliers=true)")
    refs, what = atom_ref, "init_from's references"
    if refs is None:
        refs, what = _fit(train, scans[0], data_cfg.ref_samples), "the references fitted on the training split"
    check_refs(refs, str(data_cfg.train))
    for sc in scans:
        sc.add_referenced(refs, what)
        sc.raise_first(allow, "--allow-outliers (data.allow_outliers=true)")
    natoms = max(int(sc.natoms.max()) for sc in scans)
    return refs, natoms, [line for sc in scans for line in sc.outlier_lines()]


def _fit(train: SampleDataset, scan, max_samples: int, seed: int = 0) -> dict[int, float]:
    """Per-element energies (eV) by least squares on (up to ``max_samples`` of) the training split."""
    n = len(train)
    idx = np.arange(n)
    if n > max_samples:
        idx = np.sort(np.random.default_rng(seed).choice(n, max_samples, replace=False))
    missing = next((int(i) for i in idx if np.isnan(scan.energy[i])), None)
    if missing is not None:
        hint = getattr(train.source, "label_hint", "")
        raise DataError(str(getattr(train.source, "path", "train")),
                        "sample has no energy label" + (f" ({hint})" if hint else ""), where=f"#{missing}")
    refs = scan.fit_refs(idx.tolist())
    uncovered = sorted(set(np.unique(scan.numbers).tolist()) - set(refs))
    if uncovered:
        raise UsageError(f"data.ref_samples={max_samples}: the {len(idx)} samples of the reference fit hold no "
                         f"element Z={uncovered[0]}, which the training split has; raise data.ref_samples")
    return refs


def origin_weights(ds: SampleDataset, weights: dict[str, float]) -> np.ndarray | None:
    """Per-sample draw weights from ``{origin prefix: weight}`` (:func:`horm.data.io.origin_matches`;
    the longest matching prefix wins, an unmatched sample weighs 1); None for no weights. Reads
    every sample of ``ds`` once."""
    from horm.data.io import origin_matches

    if not weights:
        return None
    by_length = sorted(((str(k).strip().rstrip(":"), float(v)) for k, v in weights.items()), key=lambda kv: -len(kv[0]))
    w = np.ones(len(ds))
    for i in range(len(ds)):
        origin = str(ds[i].origin or "")
        w[i] = next((v for k, v in by_length if origin_matches(origin, [k])), 1.0)
    if not w.sum() > 0:
        raise DataError(str(getattr(ds.source, "path", "train")), f"data.origin_weights {weights} give every "
                        f"training sample weight 0")
    return w


def make_loader(ds: SampleDataset, batch_size: int, dtype: torch.dtype, shuffle: bool, num_workers: int = 0,
                seed: int = 0, weights: np.ndarray | None = None) -> torch.utils.data.DataLoader:
    """Batches of ``ds``: shuffled, in order, or (``weights``) drawn with replacement, ``len(ds)``
    draws per epoch, with probability proportional to each sample's weight."""
    g = torch.Generator().manual_seed(seed)
    sampler = None
    if weights is not None:
        sampler = torch.utils.data.WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), len(ds),
                                                         replacement=True, generator=g)
        shuffle = False
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle, sampler=sampler,
                                       collate_fn=Collater(dtype), num_workers=num_workers,
                                       generator=g if shuffle else None, persistent_workers=num_workers > 0)
