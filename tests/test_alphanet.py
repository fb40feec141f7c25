"""AlphaNet: symmetry, derivatives, smoothness, batching and training (float64, tiny preset).

Physics stated here:
- E(Q r + t) = E(r) for rotations and mirror images Q; F and H rotate with Q (H' = Q_b H Q_bᵀ);
- relabelling atoms permutes forces and Hessian blocks;
- F = −∇E and H = ∂²E/∂r² (central finite differences), H symmetric;
- molecules of a batch do not see each other;
- linear molecules (vanishing cross-product axes) and atoms crossing the cutoff stay smooth;
- a few optimiser steps of ``horm train`` lower the E-F-H loss on real HORM data.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from horm.data.batch import collate, hessian_blocks
from horm.data.sample import Sample
from horm.models.registry import build_model, build_model_from_config, list_models
from _molecules import random_molecule, random_rotation, predict


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(3)
    m = build_model("alphanet", "tiny").eval()
    with torch.no_grad():  # trained models have non-zero biases; no term may hide behind a zero init
        for mod in m.modules():
            if isinstance(mod, torch.nn.Linear) and mod.bias is not None:
                mod.bias.normal_(std=0.1)
    return m.double()


@pytest.fixture(scope="module")
def mols():
    rng = np.random.default_rng(21)
    return [random_molecule(rng, n) for n in (5, 7)]


@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "reflection"])
def test_energy_invariant_forces_hessian_equivariant(model, mols, proper):
    rng = np.random.default_rng(8 if proper else 9)
    b, ref = predict(model, mols, hessian=True)
    q = random_rotation(rng, proper)
    moved = [s.copy(pos=s.pos @ q.T + rng.normal(size=3) * 5.0) for s in mols]
    _, out = predict(model, moved, hessian=True)
    qt = torch.as_tensor(q)
    assert torch.allclose(out["energy"], ref["energy"], atol=1e-10, rtol=1e-10)
    assert torch.allclose(out["forces"], ref["forces"] @ qt.T, atol=1e-9, rtol=1e-8)
    for h0, h1, n in zip(hessian_blocks(ref["hessian"], b.hess_ptr, b.natoms),
                         hessian_blocks(out["hessian"], b.hess_ptr, b.natoms), b.natoms.tolist()):
        big = torch.block_diag(*[qt] * n)
        assert torch.allclose(h1, big @ h0 @ big.T, atol=1e-8, rtol=1e-7)
        assert torch.allclose(h0, h0.T, atol=1e-10)  # autograd Hessian of a scalar: symmetric
    assert ref["forces"].abs().max() > 1e-2  # not trivially zero


def test_permutation_equivariance(model, mols):
    s = mols[1]
    perm = np.random.default_rng(5).permutation(s.natoms)
    _, ref = predict(model, [s], hessian=True)
    _, out = predict(model, [s.copy(numbers=s.numbers[perm], pos=s.pos[perm])], hessian=True)
    assert torch.allclose(out["energy"], ref["energy"], atol=1e-10)
    assert torch.allclose(out["forces"], ref["forces"][perm], atol=1e-10)
    rows = (3 * perm[:, None] + np.arange(3)).reshape(-1)
    n3 = 3 * s.natoms
    assert torch.allclose(out["hessian"].view(n3, n3), ref["hessian"].view(n3, n3)[rows][:, rows], atol=1e-9)


def test_forces_and_hessian_match_finite_differences(model, mols):
    """F = −∂E/∂r and H = −∂F/∂r, by central differences (h = 1e-5 Å) in float64."""
    b, out = predict(model, [mols[0]], hessian=True)
    n3 = 3 * mols[0].natoms
    h = 1e-5
    grad, jac = [], []
    for k in range(n3):
        d = torch.zeros(n3, dtype=torch.float64)
        d[k] = h
        bp, bm = b.to(), b.to()
        bp.pos, bm.pos = b.pos + d.view(-1, 3), b.pos - d.view(-1, 3)
        op, om = model(bp, create_graph=False), model(bm, create_graph=False)
        grad.append(float(op["energy"] - om["energy"]) / (2 * h))
        jac.append(-(op["forces"] - om["forces"]).reshape(-1) / (2 * h))
    fd_forces = -torch.tensor(grad, dtype=torch.float64).view(-1, 3)
    assert torch.allclose(out["forces"], fd_forces, atol=1e-7 * max(1.0, float(fd_forces.abs().max())))
    fd_h = torch.stack(jac, 1)
    assert torch.allclose(out["hessian"].view(n3, n3), fd_h, atol=1e-6 * float(fd_h.abs().max()))


def test_no_leakage_between_molecules(model, mols):
    b, together = predict(model, mols, hessian=True)
    for k, s in enumerate(mols):
        _, alone = predict(model, [s], hessian=True)
        lo, hi = int(b.ptr[k]), int(b.ptr[k + 1])
        assert torch.allclose(together["energy"][k], alone["energy"][0], atol=1e-12)
        assert torch.allclose(together["forces"][lo:hi], alone["forces"], atol=1e-12)
        assert torch.allclose(hessian_blocks(together["hessian"], b.hess_ptr, b.natoms)[k],
                              alone["hessian"].view(3 * s.natoms, 3 * s.natoms), atol=1e-11)
    # the cross-molecule Hessian block is exactly zero: forces of molecule 0 ignore molecule 1
    out = model(b, create_graph=True)
    f0 = out["forces"][: int(b.ptr[1])].sum()
    (g,) = torch.autograd.grad(f0, out["pos"])
    assert torch.count_nonzero(g[int(b.ptr[1]):]) == 0


def test_linear_molecule_and_cutoff_are_smooth(model):
    """CO2 makes every cross-product axis vanish; an atom leaving the cutoff changes nothing abruptly."""
    s = Sample(numbers=np.array([8, 6, 8]), pos=np.array([[-1.16, 0, 0], [0, 0, 0], [1.16, 0, 0]]) + 0.3)
    _, out = predict(model, [s], hessian=True)
    assert torch.isfinite(out["hessian"]).all() and out["hessian"].abs().max() < 1e3
    rc = model.cfg.cutoff
    base = np.array([[0.0, 0, 0], [1.1, 0, 0], [0.3, 1.0, 0]])
    outs = []
    for x in (rc - 1e-7, rc + 1e-7):
        t = Sample(numbers=np.array([6, 1, 8, 1]), pos=np.vstack([base, [[x, 0, 0]]]))
        outs.append(predict(model, [t])[1])
    assert abs(float(outs[0]["energy"] - outs[1]["energy"])) < 1e-6
    assert torch.allclose(outs[0]["forces"], outs[1]["forces"], atol=1e-6)


def test_registry_presets_config_roundtrip_and_float32(model, mols):
    assert "alphanet" in list_models()
    assert model.forces_mode == "autograd"
    paper = build_model("alphanet", "paper")
    assert (paper.cfg.num_layers, paper.cfg.hidden_channels, paper.cfg.num_heads) == (4, 128, 16)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        build_model("alphanet", "tiny", num_heads=5)
    with pytest.raises(ValueError, match="valid: radius, full"):
        build_model("alphanet", "tiny", graph="knn")
    clone = build_model_from_config(model.config).double()
    clone.load_state_dict(model.state_dict())
    _, a = predict(model, mols)
    _, b = predict(clone, mols)
    assert torch.equal(a["energy"], b["energy"])
    m32 = build_model_from_config(model.config)
    m32.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    out32 = m32(collate(mols), create_graph=False)
    assert out32["forces"].dtype == torch.float32
    assert torch.allclose(out32["forces"].double(), a["forces"], atol=1e-4)
    feats = model._predict(collate(mols, dtype=torch.float64), collate(mols, dtype=torch.float64).pos,
                           return_features=True)
    assert feats["node_scalar"].shape == (12, 32) and feats["node_vector"].shape == (12, 3, 32)


def test_horm_train_reduces_efh_loss(horm_sample_path, tmp_path):
    from horm.train.config import TrainConfig
    from horm.train.run import train

    cfg = TrainConfig.from_dict({
        "model": {"name": "alphanet", "preset": "tiny", "overrides": {"hidden_channels": 16, "num_layers": 1,
                                                                       "state_channels": 16}},
        "data": {"train": str(horm_sample_path), "val_fraction": 0.0, "max_train": 4},
        "loss": {"n_hr": 1},
        "optim": {"lr": 3e-3, "schedule": "constant"},
        "trainer": {"max_steps": 16, "batch_size": 4, "progress_bar": False, "log_every_n_steps": 1,
                    "ckpt_every_n_steps": 100},
        "out": str(tmp_path / "run"),
    })
    train(cfg)
    rows = []
    for f in sorted((tmp_path / "run" / "logs").glob("version_*/metrics.csv")):
        with open(f) as fh:
            rows += [float(r["train/loss"]) for r in csv.DictReader(fh) if r.get("train/loss")]
    assert len(rows) == 16
    assert np.mean(rows[-3:]) < 0.8 * np.mean(rows[:3]), rows
    assert (tmp_path / "run" / "model.pt").is_file()
