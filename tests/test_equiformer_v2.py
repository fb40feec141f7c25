"""EquiformerV2 (direct forces): symmetry, force Jacobian, smoothness, batching and training (float64, tiny).

Physics stated here:
- Wigner-D matrices from the polynomial recursion equal e3nn's; edge frames send ê to the pole;
- E(Q r + t) = E(r) for rotations Q; the predicted forces rotate with Q; the Hessian of a
  direct-force model, H = −∂F̂/∂r, is finite and rotates blockwise, H' = Q_b H Q_bᵀ;
- H equals central finite differences of the predicted forces (also for bonds along the
  pole axis and at the tie between two helper axes of the edge frames);
- relabelling atoms permutes energy, forces and Hessian; molecules of a batch do not interact;
- an atom crossing the cutoff changes nothing abruptly;
- a few optimiser steps of ``horm train`` lower the E-F-H loss (N_HR = 2) on real HORM data.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from horm.data.batch import collate, hessian_blocks
from horm.data.sample import Sample
from horm.models.registry import build_model, build_model_from_config, list_models
from horm.models.so3 import WignerD, edge_frame_layout, edge_rotation
from _molecules import random_molecule, random_rotation, predict


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(4)
    m = build_model("equiformer_v2", "tiny").eval()
    with torch.no_grad():  # non-zero biases and norm weights everywhere, as in a trained model
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.double()


@pytest.fixture(scope="module")
def mols():
    rng = np.random.default_rng(17)
    return [random_molecule(rng, n) for n in (5, 6)]


def fd_force_jacobian(model, sample, h=1e-5) -> torch.Tensor:
    """−∂F̂/∂r by central differences, (3n, 3n)."""
    b = collate([sample], dtype=torch.float64)
    cols = []
    for k in range(3 * sample.natoms):
        d = torch.zeros(3 * sample.natoms, dtype=torch.float64)
        d[k] = h
        bp, bm = b.to(), b.to()
        bp.pos, bm.pos = b.pos + d.view(-1, 3), b.pos - d.view(-1, 3)
        cols.append(-(model(bp, create_graph=False)["forces"] - model(bm, create_graph=False)["forces"]).reshape(-1)
                    / (2 * h))
    return torch.stack(cols, 1)


def test_wigner_d_and_edge_frames():
    from e3nn import o3

    torch.manual_seed(0)
    rot = o3.rand_matrix(6, dtype=torch.float64)
    wigner = WignerD(4)
    d = wigner(rot)
    assert torch.allclose(d[:, 1:4, 1:4], rot, atol=1e-15)  # l = 1 is the Cartesian vector
    assert torch.allclose(wigner(rot[:3] @ rot[3:]), d[:3] @ d[3:], atol=1e-12)  # a representation
    assert torch.allclose(d @ d.transpose(1, 2), torch.eye(25, dtype=torch.float64).expand(6, 25, 25), atol=1e-12)
    ref = o3.Irreps("0e+1o+2e+3o+4e").D_from_matrix(rot)  # e3nn's basis (it goes through float32 angles)
    assert torch.allclose(d, ref, atol=1e-5)
    unit = torch.nn.functional.normalize(torch.randn(50, 3, dtype=torch.float64), dim=-1)
    unit[0] = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)  # along the pole
    r = edge_rotation(unit)
    assert torch.allclose(r @ unit[:, :, None], torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)[:, None])
    assert torch.allclose(torch.linalg.det(r), torch.ones(50, dtype=torch.float64))
    sh = o3.spherical_harmonics(list(range(5)), unit, normalize=True)  # rotated: only m = 0 survives
    rotated = (wigner(r) @ sh[:, :, None]).squeeze(-1)
    m0 = torch.tensor([l * l + l for l in range(5)])
    off = torch.ones(25, dtype=torch.bool)
    off[m0] = False
    assert rotated[:, off].abs().max() < 1e-12
    index, degree, blocks = edge_frame_layout(4, 2)
    assert len(index) == 5 + 2 * 4 + 2 * 3 and blocks[0] == (0, 5) and degree.max() == 4


def test_energy_invariant_forces_and_hessian_equivariant(model, mols):
    rng = np.random.default_rng(6)
    b, ref = predict(model, mols, hessian=True)
    q = random_rotation(rng)
    moved = [s.copy(pos=s.pos @ q.T + rng.normal(size=3) * 5.0) for s in mols]
    _, out = predict(model, moved, hessian=True)
    qt = torch.as_tensor(q)
    assert torch.allclose(out["energy"], ref["energy"], atol=1e-10, rtol=1e-10)
    assert torch.allclose(out["forces"], ref["forces"] @ qt.T, atol=1e-10, rtol=1e-9)
    assert ref["forces"].abs().max() > 1e-2  # not trivially zero
    for h0, h1, n in zip(hessian_blocks(ref["hessian"], b.hess_ptr, b.natoms),
                         hessian_blocks(out["hessian"], b.hess_ptr, b.natoms), b.natoms.tolist()):
        assert torch.isfinite(h0).all() and h0.abs().max() > 1e-3
        big = torch.block_diag(*[qt] * n)
        assert torch.allclose(h1, big @ h0 @ big.T, atol=1e-9, rtol=1e-8)
        assert (h0 - h0.T).abs().max() > 1e-6  # a direct-force Jacobian is not symmetric by construction


def test_force_jacobian_matches_finite_differences(model, mols):
    b, out = predict(model, [mols[0]], hessian=True)
    n3 = 3 * mols[0].natoms
    fd = fd_force_jacobian(model, mols[0])
    assert torch.allclose(out["hessian"].view(n3, n3), fd, atol=1e-6 * float(fd.abs().max()))


def test_edges_along_pole_and_frame_ties_are_smooth(model):
    """A bond exactly along y (the pole) and one with |x| = |z| (two helper axes tie): the
    frame choice jumps there, the Jacobian of the forces must not."""
    pos = np.array([[0.0, 0.0, 0.0], [0.0, 1.2, 0.0], [0.9, 0.0, 0.9], [-0.7, -0.8, 0.5]])
    s = Sample(numbers=np.array([6, 1, 8, 7]), pos=pos)
    _, out = predict(model, [s], hessian=True)
    fd = fd_force_jacobian(model, s)
    assert torch.isfinite(out["hessian"]).all()
    assert torch.allclose(out["hessian"].view(12, 12), fd, atol=1e-6 * float(fd.abs().max()))


def test_permutation_equivariance(model, mols):
    s = mols[1]
    perm = np.random.default_rng(2).permutation(s.natoms)
    _, ref = predict(model, [s], hessian=True)
    _, out = predict(model, [s.copy(numbers=s.numbers[perm], pos=s.pos[perm])], hessian=True)
    assert torch.allclose(out["energy"], ref["energy"], atol=1e-10)
    assert torch.allclose(out["forces"], ref["forces"][perm], atol=1e-10)
    rows = (3 * perm[:, None] + np.arange(3)).reshape(-1)
    n3 = 3 * s.natoms
    assert torch.allclose(out["hessian"].view(n3, n3), ref["hessian"].view(n3, n3)[rows][:, rows], atol=1e-10)


def test_no_leakage_between_molecules(model, mols):
    b, together = predict(model, mols, hessian=True)
    for k, s in enumerate(mols):
        _, alone = predict(model, [s], hessian=True)
        lo, hi = int(b.ptr[k]), int(b.ptr[k + 1])
        assert torch.allclose(together["energy"][k], alone["energy"][0], atol=1e-12)
        assert torch.allclose(together["forces"][lo:hi], alone["forces"], atol=1e-12)
        assert torch.allclose(hessian_blocks(together["hessian"], b.hess_ptr, b.natoms)[k],
                              alone["hessian"].view(3 * s.natoms, 3 * s.natoms), atol=1e-12)
    out = model(b, create_graph=True)
    (g,) = torch.autograd.grad(out["forces"][: int(b.ptr[1])].sum(), out["pos"])
    assert torch.count_nonzero(g[int(b.ptr[1]):]) == 0


def test_energy_and_forces_continuous_across_cutoff(model):
    rc = model.cfg.cutoff
    base = np.array([[0.0, 0, 0], [1.1, 0, 0], [0.3, 1.0, 0]])
    outs = []
    for x in (rc - 1e-7, rc + 1e-7):
        s = Sample(numbers=np.array([6, 1, 8, 1]), pos=np.vstack([base, [[x, 0, 0]]]))
        outs.append(predict(model, [s])[1])
    assert abs(float(outs[0]["energy"] - outs[1]["energy"])) < 1e-6
    assert torch.allclose(outs[0]["forces"], outs[1]["forces"], atol=1e-6)


def test_registry_presets_config_roundtrip_and_float32(model, mols):
    assert "equiformer_v2" in list_models()
    assert model.forces_mode == "direct"
    paper = build_model("equiformer_v2", "paper")
    c = paper.cfg
    assert (c.num_layers, c.sphere_channels, c.num_heads, c.lmax) == (4, 128, 4, 4)
    with pytest.raises(ValueError, match="mmax"):
        build_model("equiformer_v2", "tiny", mmax=3)
    clone = build_model_from_config(model.config).double()
    clone.load_state_dict(model.state_dict())
    _, a = predict(model, mols)
    _, b = predict(clone, mols)
    assert torch.equal(a["forces"], b["forces"])
    m32 = build_model_from_config(model.config)
    m32.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    out32 = m32(collate(mols), create_graph=False)
    assert out32["forces"].dtype == torch.float32
    assert torch.allclose(out32["forces"].double(), a["forces"], atol=1e-4)
    bb = collate(mols, dtype=torch.float64)
    feats = model._predict(bb, bb.pos, return_features=True)
    assert feats["node_scalar"].shape == (11, 16) and feats["node_vector"].shape == (11, 3, 16)


def test_horm_train_reduces_efh_loss(horm_sample_path, tmp_path):
    """E-F-H with N_HR = 2 through the Lightning trainer; validation on the same molecules uses
    seeded Hessian rows, so successive validation losses are comparable."""
    from horm.train.config import TrainConfig
    from horm.train.run import train

    cfg = TrainConfig.from_dict({
        "model": {"name": "equiformer_v2", "preset": "tiny", "overrides": {"num_layers": 1, "sphere_channels": 8,
                                                                            "attn_hidden_channels": 8}},
        "data": {"train": str(horm_sample_path), "val": str(horm_sample_path), "max_train": 4, "max_val": 4},
        "loss": {"n_hr": 2},
        "optim": {"lr": 5e-3, "schedule": "constant"},
        "trainer": {"max_steps": 16, "batch_size": 4, "progress_bar": False, "log_every_n_steps": 1,
                    "ckpt_every_n_steps": 100, "val_every_n_steps": 4},
        "out": str(tmp_path / "run"),
    })
    train(cfg)
    rows = []
    for f in sorted((tmp_path / "run" / "logs").glob("version_*/metrics.csv")):
        with open(f) as fh:
            rows += list(csv.DictReader(fh))
    train_rows = [r for r in rows if r.get("train/loss")]
    val = [float(r["val/loss"]) for r in rows if r.get("val/loss")]
    assert len(train_rows) == 16 and len(val) == 4
    assert all(float(r["train/hessian_rows"]) > 0 for r in train_rows)  # the force-Jacobian rows term is on
    forces = [float(r["train/forces"]) for r in train_rows]
    assert np.mean(forces[-3:]) < 0.9 * np.mean(forces[:3]), forces
    assert val[-1] < 0.95 * val[0], val
