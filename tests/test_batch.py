"""horm.data.batch: padding-free collation, flat Hessian blocks, sampled-row gathering."""

from __future__ import annotations

import numpy as np
import torch

from horm.data.batch import Collater, SampleDataset, collate, gather_hessian_rows, hessian_blocks
from horm.data.sample import Sample


def _samples(rng, sizes=(3, 5, 2), labels=True):
    out = []
    for n in sizes:
        out.append(Sample(numbers=rng.integers(1, 9, size=n), pos=rng.normal(size=(n, 3)) * 3,
                          energy=float(rng.normal()) if labels else None,
                          forces=rng.normal(size=(n, 3)) if labels else None,
                          hessian=rng.normal(size=(3 * n, 3 * n)) if labels else None,
                          charge=int(rng.integers(-1, 2)), extras={"ae": float(rng.normal())}))
    return out


def test_collate_layout_and_blocks():
    rng = np.random.default_rng(0)
    ss = _samples(rng)
    b = collate(ss, dtype=torch.float64)
    assert b.ptr.tolist() == [0, 3, 8, 10] and b.natoms.tolist() == [3, 5, 2]
    assert b.batch.tolist() == [0] * 3 + [1] * 5 + [2] * 2
    assert b.hess_ptr.tolist() == [0, 81, 81 + 225, 81 + 225 + 36]
    assert torch.equal(b.pos[3:8], torch.as_tensor(ss[1].pos))
    assert torch.equal(b.charge, torch.tensor([s.charge for s in ss]))
    for h, s in zip(hessian_blocks(b), ss):
        assert torch.equal(h, torch.as_tensor(s.hessian))  # row-major, not transposed
    assert b.extras["ae"].shape == (3,)
    b32 = b.to("cpu", dtype=torch.float32)
    assert b32.pos.dtype == torch.float32 and b32.numbers.dtype == torch.long and b32["hessian"].dtype == torch.float32


def test_labels_dropped_unless_all_samples_have_them():
    rng = np.random.default_rng(1)
    ss = _samples(rng, (2, 2)) + _samples(rng, (3,), labels=False)
    b = collate(ss)
    assert b.energy is None and b.forces is None and b.hessian is None
    assert b.hess_ptr.tolist() == [0, 36, 72, 153]


def test_gather_hessian_rows_matches_rows_and_masks():
    rng = np.random.default_rng(2)
    ss = _samples(rng)
    b = collate(ss, dtype=torch.float64)
    idx = torch.tensor([[0, 8], [14, 2], [5, -1]])
    rows = gather_hessian_rows(b, idx)
    assert rows.shape == (2, 10, 3)
    for m, s in enumerate(ss):
        sl = slice(int(b.ptr[m]), int(b.ptr[m + 1]))
        for k in range(2):
            j = int(idx[m, k])
            want = s.hessian[j].reshape(-1, 3) if j >= 0 else np.zeros((s.natoms, 3))
            assert np.array_equal(rows[k, sl].numpy(), want)


def test_dataset_and_dataloader():
    rng = np.random.default_rng(3)
    ss = _samples(rng, (2, 3, 4, 5))
    ds = SampleDataset(ss, indices=[3, 1])
    assert len(ds) == 2 and ds[0].natoms == 5
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=Collater(torch.float64))
    (b,) = list(loader)
    assert b.natoms.tolist() == [5, 3] and b.pos.dtype == torch.float64
