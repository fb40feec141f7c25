"""Physics of horm.hessian.autograd, in float64, on tiny LEFTNet models (both force modes).

H = ∂²E/∂r² = −∂F/∂r; every check here could fail for a wrong sign, a wrong index or a
gradient that leaks between molecules of a batch.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from horm.data.batch import Batch, collate, gather_hessian_rows, hessian_blocks
from horm.data.sample import Sample
from horm.hessian.autograd import (
    batched_one_hots,
    compute_forces,
    draw_row_indices,
    force_vjps,
    full_hessian,
    sample_hessian_rows,
)
from horm.models.registry import build_model

MODES = ("leftnet", "leftnet-df")


def random_molecule(rng, n: int, min_dist: float = 0.95) -> Sample:
    while True:
        pos = rng.normal(size=(n, 3)) * (0.55 * n ** (1 / 3) + 0.5)
        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + 10 * np.eye(n)
        if d.min() > min_dist:
            return Sample(numbers=rng.choice([1, 6, 7, 8], size=n), pos=pos)


@pytest.fixture(scope="module")
def models():
    out = {}
    for name in MODES:
        torch.manual_seed(1)
        out[name] = build_model(name, "tiny").double().eval()
    return out


@pytest.fixture(scope="module")
def batch() -> Batch:
    rng = np.random.default_rng(7)
    return collate([random_molecule(rng, n) for n in (4, 6, 3)], dtype=torch.float64)


def fd_hessian_blocks(model, batch: Batch, h: float = 1e-5):
    """Central differences of the forces: H[:, 3a+c] = −(F(r + h e) − F(r − h e)) / 2h."""
    base = batch.pos.detach().clone()
    cols = []
    for a in range(batch.num_atoms):
        for c in range(3):
            pp, pm = base.clone(), base.clone()
            pp[a, c] += h
            pm[a, c] -= h
            with torch.no_grad():
                fp = model(_with_pos(batch, pp), create_graph=False)["forces"]
                fm = model(_with_pos(batch, pm), create_graph=False)["forces"]
            cols.append(-(fp - fm).reshape(-1) / (2 * h))
    full = torch.stack(cols, dim=1)  # (3N_tot, 3N_tot) column = derivative wrt coordinate
    blocks = []
    for b, n in enumerate(batch.natoms.tolist()):
        lo = 3 * int(batch.ptr[b])
        blocks.append(full[lo:lo + 3 * n, lo:lo + 3 * n])
    return blocks, full


def _with_pos(batch: Batch, pos: torch.Tensor) -> Batch:
    b = batch.to()
    b.pos = pos
    return b


@pytest.fixture(scope="module")
def reference(models, batch):
    """Per model: full Hessian blocks (batched path) and finite-difference blocks/full Jacobian."""
    out = {}
    for name, m in models.items():
        res = m(batch, compute_hessian=True, create_graph=False)
        blocks = hessian_blocks(res["hessian"], batch.hess_ptr, batch.natoms)
        fd_blocks, fd_full = fd_hessian_blocks(m, batch)
        out[name] = (blocks, fd_blocks, fd_full)
    return out


def test_forces_are_minus_energy_gradient_fd(models, batch):
    m = models["leftnet"]
    f = m(batch, create_graph=False)["forces"]
    h = 1e-5
    base = batch.pos.clone()
    for a, c in [(0, 0), (2, 1), (5, 2), (12, 0)]:
        pp, pm = base.clone(), base.clone()
        pp[a, c] += h
        pm[a, c] -= h
        with torch.no_grad():
            ep = m(_with_pos(batch, pp), compute_forces=False)["energy"].sum()
            em = m(_with_pos(batch, pm), compute_forces=False)["energy"].sum()
        assert torch.allclose(f[a, c], -(ep - em) / (2 * h), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", MODES)
def test_full_hessian_matches_finite_differences(reference, name):
    blocks, fd_blocks, _ = reference[name]
    for hb, fb in zip(blocks, fd_blocks):
        scale = fb.abs().max()
        assert scale > 1e-3  # a non-trivial Hessian, else the test says nothing
        assert torch.allclose(hb, fb, atol=1e-6 * float(scale), rtol=1e-5)


@pytest.mark.parametrize("name", MODES)
def test_no_cross_molecule_leakage(reference, models, batch, name):
    blocks, _, fd_full = reference[name]
    # off-diagonal (cross-molecule) blocks of the FD Jacobian over the whole batch vanish
    mask = torch.ones_like(fd_full, dtype=torch.bool)
    for b, n in enumerate(batch.natoms.tolist()):
        lo = 3 * int(batch.ptr[b])
        mask[lo:lo + 3 * n, lo:lo + 3 * n] = False
    assert fd_full[mask].abs().max() < 1e-9
    # moving molecule 2 leaves energy, forces and Hessian of molecule 1 unchanged
    m = models[name]
    pos = batch.pos.clone()
    sl2 = slice(int(batch.ptr[1]), int(batch.ptr[2]))
    pos[sl2] += 0.1 * torch.randn(pos[sl2].shape, generator=torch.Generator().manual_seed(5), dtype=pos.dtype)
    moved = m(_with_pos(batch, pos), compute_hessian=True, create_graph=False)
    orig = m(batch, compute_hessian=True, create_graph=False)
    sl1 = slice(0, int(batch.ptr[1]))
    assert moved["energy"][0] == orig["energy"][0] and moved["energy"][1] != orig["energy"][1]
    assert torch.equal(moved["forces"][sl1], orig["forces"][sl1])
    h_new = hessian_blocks(moved["hessian"], batch.hess_ptr, batch.natoms)
    assert torch.allclose(h_new[0], blocks[0], atol=1e-13) and not torch.allclose(h_new[1], blocks[1])


def test_autograd_hessian_symmetric_direct_not(reference):
    for hb in reference["leftnet"][0]:
        assert (hb - hb.T).abs().max() < 1e-10 * max(1.0, float(hb.abs().max()))
    # leftnet-df returns the Jacobian of its predicted forces, which has no reason to be symmetric
    asym = max(float((hb - hb.T).abs().max() / hb.abs().max()) for hb in reference["leftnet-df"][0])
    assert asym > 1e-4


@pytest.mark.parametrize("name", MODES)
def test_loop_vmap_batched_paths_agree(models, batch, name):
    m = models[name]
    res = m(batch, create_graph=True)
    got = {meth: full_hessian(res["forces"], res["pos"], batch.ptr, method=meth, chunk_size=5)
           for meth in ("loop", "vmap", "batched")}
    for meth in ("vmap", "batched"):
        for a, b in zip(got["loop"], got[meth]):
            assert torch.allclose(a, b, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("name", MODES)
def test_sampled_rows_are_rows_of_full_hessian(reference, models, batch, name):
    m = models[name]
    blocks = reference[name][0]
    res = m(batch, create_graph=True)
    g = torch.Generator().manual_seed(3)
    rows, idx = sample_hessian_rows(res["forces"], res["pos"], batch.batch, batch.ptr, s=4, generator=g,
                                    create_graph=True)
    assert rows.shape == (4, batch.num_atoms, 3) and idx.shape == (3, 4)
    for b, n in enumerate(batch.natoms.tolist()):
        assert len(set(idx[b].tolist())) == 4 and int(idx[b].max()) < 3 * n
        lo, hi = int(batch.ptr[b]), int(batch.ptr[b + 1])
        for k in range(4):
            want = blocks[b][idx[b, k]].reshape(n, 3)
            assert torch.allclose(rows[k, lo:hi], want, atol=1e-12, rtol=1e-9)
    # the same layout comes out of gather_hessian_rows on a batch that holds these Hessians
    labelled = batch.to()
    labelled.hessian = torch.cat([hb.reshape(-1) for hb in blocks])
    assert torch.allclose(gather_hessian_rows(labelled, idx), rows.detach(), atol=1e-12)
    # create_graph=True: the rows are differentiable w.r.t. the parameters (training)
    rows.pow(2).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
    m.zero_grad()


def test_rows_capped_for_small_molecules():
    natoms = torch.tensor([1, 5, 2])
    g = torch.Generator().manual_seed(0)
    idx = draw_row_indices(natoms, s=5, generator=g)
    assert idx.shape == (3, 5)
    assert sorted(idx[0, :3].tolist()) == [0, 1, 2] and idx[0, 3:].tolist() == [-1, -1]
    assert len(set(idx[1].tolist())) == 5 and idx[1].max() < 15
    assert (idx[2] >= 0).all()
    # rows are uniform over [0, 3n): every row of a 2-atom molecule is drawn over many draws
    seen = torch.cat([draw_row_indices(torch.tensor([2]), 1, g)[0] for _ in range(200)])
    assert set(seen.tolist()) == set(range(6))


def test_batched_one_hots_select_row_k_of_every_molecule():
    ptr = torch.tensor([0, 2, 5])
    v = batched_one_hots(ptr, torch.zeros(5, 3))
    assert v.shape == (9, 5, 3)
    assert v.sum(dim=(1, 2)).tolist() == [2] * 6 + [1] * 3  # rows 6..8 exist in molecule 2 only
    assert v[4, 1, 1] == 1 and v[4, 3, 1] == 1


class _NoVmap(torch.autograd.Function):
    """x ↦ x³ whose backward uses .item(), which vmap cannot batch."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        _ = float(g.sum().item())
        return 3 * x**2 * g


def test_vmap_failure_falls_back_to_loop_and_logs(caplog):
    pos = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    forces = -_NoVmap.apply(pos)  # F = −r³ ⇒ H = diag(3 r²)
    caplog.set_level(logging.WARNING, logger="horm.hessian.autograd")
    import horm.hessian.autograd as ag

    ag._warned.discard("vmap")
    (hb,) = full_hessian(forces, pos, torch.tensor([0, 4]), method="batched")
    assert torch.allclose(hb, torch.diag(3 * pos.detach().reshape(-1) ** 2))
    assert any("falling back to a Python loop" in r.getMessage() for r in caplog.records)


def test_compute_forces_and_vjp_sign():
    pos = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    energy = 0.5 * (pos**2).sum()[None]  # harmonic: F = −r, H = I
    f = compute_forces(energy, pos, create_graph=True)
    assert torch.allclose(f, -pos)
    g = force_vjps(f, pos, torch.eye(9, dtype=torch.float64).reshape(9, 3, 3))
    assert torch.allclose(-g.reshape(9, 9), torch.eye(9, dtype=torch.float64))


def test_auto_chunk_bounds_memory(models, batch, monkeypatch):
    from horm.hessian.autograd import SavedTensorMeter, auto_chunk

    x = torch.randn(1000, 10, dtype=torch.float64, requires_grad=True)
    with SavedTensorMeter() as meter:
        (x.sin() * x).sum()
    assert meter.nbytes >= 2 * 1000 * 10 * 8  # sin and mul each save a (1000, 10) float64
    assert auto_chunk(0, budget_bytes=2**30) == 64 and auto_chunk(10**12, budget_bytes=2**30) == 1
    assert auto_chunk(100 * 2**20, budget_bytes=2**30) == int(2**30 // (0.75 * 100 * 2**20))
    # the automatic chunk (tiny budget -> 1 row per VJP) gives the same Hessian
    monkeypatch.setenv("HORM_HESSIAN_MEMORY_GB", "1e-6")
    m = models["leftnet"]
    a = m(batch, compute_hessian=True, create_graph=False)["hessian"]
    b = m(batch, compute_hessian=True, create_graph=False, chunk_size=64)["hessian"]
    assert torch.allclose(a, b, atol=1e-12)


def test_saved_tensor_meter_leaves_no_reference_cycle():
    """A graph built under the meter is freed with its last reference (it once leaked every
    saved output: the packed tensor held its own grad_fn)."""
    import gc
    import weakref

    from horm.hessian.autograd import SavedTensorMeter

    x = torch.randn(1000, dtype=torch.float64, requires_grad=True)
    with SavedTensorMeter() as meter:
        y = x.exp()  # exp saves its output
    assert meter.nbytes >= 1000 * 8
    ref = weakref.ref(y)
    del y
    gc.collect()
    assert ref() is None


def test_metered_hessian_has_the_same_parameter_gradients(models, batch):
    """Second-order training through the metered (automatic chunk) path: the gradient of a
    Hessian loss w.r.t. the weights equals the one through a fixed chunk."""
    m = models["leftnet"]
    grads = []
    for chunk in (None, 64):
        m.zero_grad()
        h = m(batch, compute_hessian=True, create_graph=True, chunk_size=chunk)["hessian"]
        (h ** 2).sum().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in m.parameters() if p.grad is not None]))
    m.zero_grad()
    assert grads[0].abs().max() > 0
    assert torch.allclose(grads[0], grads[1], rtol=1e-9, atol=1e-12)
