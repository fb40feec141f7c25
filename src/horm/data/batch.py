"""Collate Samples into one padding-free graph batch of torch tensors.

Layout (B molecules, N_tot atoms in all; molecule b holds atoms ptr[b]:ptr[b+1]):

- ``numbers``  (N_tot,) long      atomic numbers
- ``pos``      (N_tot, 3) float   positions, Å
- ``batch``    (N_tot,) long      molecule index of each atom
- ``ptr``      (B+1,) long        atom offsets
- ``natoms``   (B,) long          atoms per molecule
- ``charge``   (B,) long          total charge, e
- ``energy``   (B,) float         total energy, eV              (only when every sample has it)
- ``forces``   (N_tot, 3) float   eV/Å                           (only when every sample has it)
- ``hessian``  (Σ_b (3n_b)²,) float  flat concatenation of the per-molecule (3n_b, 3n_b)
  blocks, each row-major over (3·atom + xyz), eV/Å²           (only when every sample has it)
- ``hess_ptr`` (B+1,) long        offsets of each block in ``hessian`` (always present, so
  predicted Hessians can use the same layout)
- ``extras``   dict name -> (B,) float, per-molecule scalar extras present in every sample
  (e.g. HORM's ``ae``)

The batch Hessian is block-diagonal and is never materialised as one big matrix.
Sampled Hessian rows (see :func:`horm.hessian.autograd.sample_hessian_rows`) use the
shape (s, N_tot, 3): entry [k, a] holds the columns of atom a in row ``idx[b, k]`` of
molecule b = batch[a]. :func:`gather_hessian_rows` cuts the same layout out of the
reference Hessians.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Sequence

import numpy as np
import torch

from horm.data.sample import Sample

_TENSOR_FIELDS = ("numbers", "pos", "batch", "ptr", "natoms", "charge", "energy", "forces",
                  "hessian", "hess_ptr")
_FLOAT_FIELDS = ("pos", "energy", "forces", "hessian")


@dataclass
class Batch:
    """A padding-free batch of molecules (see the module docstring for shapes and units)."""

    numbers: torch.Tensor
    pos: torch.Tensor
    batch: torch.Tensor
    ptr: torch.Tensor
    natoms: torch.Tensor
    charge: torch.Tensor
    hess_ptr: torch.Tensor
    energy: torch.Tensor | None = None
    forces: torch.Tensor | None = None
    hessian: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def num_graphs(self) -> int:
        """B, the number of molecules."""
        return int(self.natoms.numel())

    @property
    def num_atoms(self) -> int:
        """N_tot, the number of atoms in all molecules."""
        return int(self.numbers.numel())

    def has(self, name: str) -> bool:
        return getattr(self, name, None) is not None

    def __getitem__(self, name: str) -> Any:
        """Dict-style access (``batch["pos"]``), for code written against dict batches."""
        return getattr(self, name)

    def __len__(self) -> int:
        return self.num_graphs

    def to(self, device=None, dtype: torch.dtype | None = None) -> "Batch":
        """Copy to ``device``; ``dtype`` (if given) applies to the float fields only."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "extras":
                out["extras"] = {k: t.to(device=device, dtype=dtype or t.dtype) for k, t in v.items()}
            elif v is None:
                out[f.name] = None
            elif f.name in _FLOAT_FIELDS and dtype is not None:
                out[f.name] = v.to(device=device, dtype=dtype)
            else:
                out[f.name] = v.to(device=device)
        return Batch(**out)

    def hessian_blocks(self) -> list[torch.Tensor]:
        """The reference Hessians as a list of (3n_b, 3n_b) views."""
        if self.hessian is None:
            raise ValueError("this batch carries no Hessians")
        return hessian_blocks(self.hessian, self.hess_ptr, self.natoms)


def hessian_offsets(natoms: torch.Tensor) -> torch.Tensor:
    """(B+1,) offsets of each flat (3n_b)² block, from ``natoms`` (B,)."""
    sizes = (3 * natoms.long()) ** 2
    return torch.cat([sizes.new_zeros(1), torch.cumsum(sizes, 0)])


def hessian_blocks(hessian: torch.Tensor | Batch, hess_ptr: torch.Tensor | None = None,
                   natoms: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Split a flat block-diagonal Hessian into a list of (3n_b, 3n_b) views.

    Call as ``hessian_blocks(batch)`` (the reference Hessians of a Batch) or
    ``hessian_blocks(flat, hess_ptr, natoms)`` (e.g. a predicted flat Hessian).
    """
    if isinstance(hessian, Batch):
        return hessian.hessian_blocks()
    if hess_ptr is None or natoms is None:
        raise ValueError("hessian_blocks(flat, hess_ptr, natoms) needs hess_ptr and natoms")
    out = []
    for b, n in enumerate(natoms.tolist()):
        lo, hi = int(hess_ptr[b]), int(hess_ptr[b + 1])
        out.append(hessian[lo:hi].view(3 * n, 3 * n))
    return out


def flatten_hessians(blocks: Sequence[torch.Tensor]) -> torch.Tensor:
    """Inverse of :func:`hessian_blocks`: concatenate (3n_b, 3n_b) blocks row-major."""
    return torch.cat([h.reshape(-1) for h in blocks])


def gather_hessian_rows(batch: Batch, idx: torch.Tensor) -> torch.Tensor:
    """Reference Hessian rows in the sampled-row layout.

    idx: (B, s) long row indices j ∈ [0, 3n_b); entries < 0 mark "no row" (molecules with
    fewer than s rows) and give zeros. Returns (s, N_tot, 3) eV/Å² where
    out[k, a, c] = H_b[idx[b, k], 3·(a − ptr[b]) + c] with b = batch[a].
    """
    if batch.hessian is None:
        raise ValueError("this batch carries no Hessians")
    idx = idx.to(batch.ptr.device).long()
    s = idx.shape[1]
    n3 = 3 * batch.natoms[batch.batch]  # (N_tot,) row length of each atom's molecule
    local = torch.arange(batch.num_atoms, device=batch.ptr.device) - batch.ptr[batch.batch]
    cols = 3 * local[:, None] + torch.arange(3, device=local.device)  # (N_tot, 3)
    j = idx[batch.batch].T  # (s, N_tot)
    valid = j >= 0
    flat = (batch.hess_ptr[batch.batch][None, :, None]
            + (j.clamp(min=0) * n3[None, :])[:, :, None] + cols[None])  # (s, N_tot, 3)
    out = batch.hessian[flat.reshape(-1)].view(s, batch.num_atoms, 3)
    return out * valid[:, :, None].to(out.dtype)


def collate(samples: Sequence[Sample], dtype: torch.dtype = torch.float32) -> Batch:
    """Concatenate Samples into a :class:`Batch`; labels are kept only if all samples have them."""
    if len(samples) == 0:
        raise ValueError("collate needs at least one sample")
    natoms = torch.tensor([s.natoms for s in samples], dtype=torch.long)
    ptr = torch.cat([natoms.new_zeros(1), torch.cumsum(natoms, 0)])
    numbers = torch.from_numpy(np.concatenate([np.asarray(s.numbers, dtype=np.int64) for s in samples]))
    pos = torch.from_numpy(np.concatenate([np.asarray(s.pos, dtype=np.float64).reshape(-1, 3)
                                           for s in samples])).to(dtype)
    batch = torch.repeat_interleave(torch.arange(len(samples)), natoms)
    charge = torch.tensor([int(s.charge) for s in samples], dtype=torch.long)
    out = Batch(numbers=numbers, pos=pos, batch=batch, ptr=ptr, natoms=natoms, charge=charge,
                hess_ptr=hessian_offsets(natoms))
    if all(s.energy is not None for s in samples):
        out.energy = torch.tensor([float(s.energy) for s in samples], dtype=torch.float64).to(dtype)
    if all(s.forces is not None for s in samples):
        out.forces = torch.from_numpy(np.concatenate(
            [np.asarray(s.forces, dtype=np.float64).reshape(-1, 3) for s in samples])).to(dtype)
    if all(s.hessian is not None for s in samples):
        out.hessian = torch.from_numpy(np.concatenate(
            [np.asarray(s.hessian, dtype=np.float64).reshape(-1) for s in samples])).to(dtype)
    common = set.intersection(*(set(s.extras) for s in samples))
    for k in sorted(common):
        vals = [np.asarray(s.extras[k]) for s in samples]
        if all(v.size == 1 and v.dtype.kind in "fiu" for v in vals):
            out.extras[k] = torch.tensor([float(v.reshape(())) for v in vals], dtype=torch.float64).to(dtype)
    return out


class Collater:
    """Picklable DataLoader ``collate_fn``: ``DataLoader(ds, collate_fn=Collater(torch.float64))``.
    The problems a :class:`SampleDataset` check found travel as ``batch.problems`` (raised by the
    training process, not inside a worker)."""

    def __init__(self, dtype: torch.dtype = torch.float32):
        self.dtype = dtype

    def __call__(self, samples: Sequence[Sample]) -> Batch:
        out = collate(samples, dtype=self.dtype)
        problems = [p for s in samples if (p := getattr(s, "problem", None))]
        if problems:
            out.problems = problems
        return out


class SampleDataset(torch.utils.data.Dataset):
    """A torch Dataset over any indexable of Samples (HormLmdb, HessianStore, a list, ...).

    ``indices`` selects a subset (e.g. a split), held as one int64 array (no per-sample Python
    object); ``transform`` maps Sample -> Sample; ``check(sample, source, index)`` returns a
    problem (kept as ``sample.problem`` for the collater) or None.
    """

    def __init__(self, source, indices: Sequence[int] | None = None, transform=None, check=None):
        self.source = source
        self.indices = (np.arange(len(source), dtype=np.int64) if indices is None
                        else np.asarray(indices, dtype=np.int64).reshape(-1))
        self.transform = transform
        self.check = check

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Sample:
        j = int(self.indices[i])
        s = self.source[j]
        if self.check is not None and (p := self.check(s, str(getattr(self.source, "path", "data")), j)):
            s.problem = p
        return self.transform(s) if self.transform is not None else s
