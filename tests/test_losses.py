"""The E-F (Eq. 2) and E-F-H (Eq. 3) losses, checked by hand on potentials with known Hessians.

A quadratic potential E_b = ½ x_bᵀ A x_b (x_b the flattened positions of molecule b) has
forces −A x and Hessian A exactly. Its direct-force twin predicts F = −B x with a
non-symmetric B, whose "Hessian" −∂F/∂r is B. Labels equal to a model's own derivatives
must give a zero loss; shifted labels give values computed here by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from horm.data.batch import collate
from horm.data.sample import Sample
from horm.hessian.autograd import draw_row_indices, full_hessian
from horm.models.base import Potential
from horm.models.registry import build_model
from horm.train.config import TrainConfig
from horm.train.losses import LossSpec, LossTerm, compute_loss, ef_loss, efh_loss

NATOMS = (3, 4)


@dataclass
class _Cfg:
    n: int = 0


class Quadratic(Potential):
    """E_b = ½ s x_bᵀ A_b x_b (autograd) or F = −s B_b x_b (direct), one fixed matrix per molecule."""

    def __init__(self, mats, mode: str):
        self.forces_mode = mode
        super().__init__(_Cfg())
        self.mats = [torch.as_tensor(m) for m in mats]
        self.s = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))

    def _predict(self, batch, pos):
        e, f = [], []
        for b, m in enumerate(self.mats):
            x = pos[batch.ptr[b]:batch.ptr[b + 1]].reshape(-1)
            e.append(0.5 * self.s * x @ (m @ x))
            f.append(-(self.s * (m @ x)).reshape(-1, 3))
        out = {"energy": torch.stack(e)}
        if self.forces_mode == "direct":
            out["forces"] = torch.cat(f)
        return out


def _mats(rng, symmetric: bool):
    out = []
    for n in NATOMS:
        m = rng.normal(size=(3 * n, 3 * n))
        out.append(m + m.T if symmetric else m)
    return out


def _labelled(mats, rng, shift_e=0.0, shift_f=0.0, shift_h=0.0):
    samples = []
    for n, m in zip(NATOMS, mats):
        pos = rng.normal(size=(n, 3))
        x = pos.reshape(-1)
        e = 0.5 * x @ m @ x  # for non-symmetric B this is only the energy head, not −∫F
        samples.append(Sample(numbers=np.full(n, 6), pos=pos, energy=e + shift_e,
                              forces=-(m @ x).reshape(n, 3) + shift_f, hessian=m + shift_h))
    return collate(samples, dtype=torch.float64)


@pytest.mark.parametrize("mode", ["autograd", "direct"])
def test_efh_zero_at_own_derivatives_and_hand_values_otherwise(mode):
    rng = np.random.default_rng(0)
    mats = _mats(rng, symmetric=(mode == "autograd"))
    model = Quadratic(mats, mode)
    spec = efh_loss(n_hr=2)
    exact = _labelled(mats, np.random.default_rng(1))
    out = compute_loss(model, exact, spec, training=True)
    assert out.total.item() == pytest.approx(0.0, abs=1e-10)
    # shift every label: |ΔE| = 0.5, |ΔF| = 0.1 per component, ΔH = 0.2 in every entry
    shifted = _labelled(mats, np.random.default_rng(1), shift_e=0.5, shift_f=0.1, shift_h=0.2)
    out = compute_loss(model, shifted, spec, training=True)
    assert out.parts["energy"].item() == pytest.approx(0.5)
    assert out.parts["forces"].item() == pytest.approx(0.1)
    # per-atom L2 of a row: each atom's 3 columns differ by 0.2 → √3·0.2, summed over n atoms
    per_mol = np.array([n * math.sqrt(3) * 0.2 for n in NATOMS])
    assert out.parts["hessian_rows"].item() == pytest.approx(per_mol.mean())
    want = 4 * 0.5 + 100 * 0.1 + 4 * per_mol.mean() / 10
    assert out.total.item() == pytest.approx(want)
    # the E-F loss ignores the Hessian labels
    assert compute_loss(model, shifted, ef_loss(), training=True).total.item() == pytest.approx(4 * 0.5 + 100 * 0.1)


def test_hessian_metrics_by_hand_and_gradient_direction():
    rng = np.random.default_rng(2)
    mats = _mats(rng, symmetric=True)
    model = Quadratic(mats, "autograd")
    batch = _labelled([2.0 * m for m in mats], np.random.default_rng(3))  # labels of s = 2
    for metric in ("per_atom_l2", "l2", "l1", "mse"):
        spec = LossSpec((LossTerm("hessian_rows", metric, 1.0),), n_hr=3, hessian_divisor=1.0)
        g = torch.Generator().manual_seed(5)
        out = compute_loss(model, batch, spec, training=True, generator=g)
        idx = draw_row_indices(batch.natoms, 3, torch.Generator().manual_seed(5))
        hand = []
        for b, m in enumerate(mats):  # Δrow = H_label_row − H_model_row = m_row (s = 1 vs 2)
            rows = [m[j].reshape(-1, 3) for j in idx[b].tolist()]
            f = {"per_atom_l2": lambda r: np.linalg.norm(r, axis=1).sum(), "l2": lambda r: np.linalg.norm(r),
                 "l1": lambda r: np.abs(r).mean(), "mse": lambda r: (r ** 2).mean()}[metric]
            hand.append(np.mean([f(r) for r in rows]))
        assert out.total.item() == pytest.approx(np.mean(hand), rel=1e-10), metric
        # s = 1 is below the labels' s = 2, so the Hessian term must push s up
        model.s.grad = None
        out.total.backward()
        assert model.s.grad.item() < 0, metric


def test_sampled_rows_loss_equals_full_hessian_loss_value_and_gradient():
    rng = np.random.default_rng(4)
    samples = []
    for n in (4, 6, 3):
        while True:
            pos = rng.normal(size=(n, 3)) * 1.2
            d = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + 9 * np.eye(n)
            if d.min() > 0.9:
                break
        h = rng.normal(size=(3 * n, 3 * n))
        samples.append(Sample(numbers=rng.choice([1, 6, 8], size=n), pos=pos, energy=0.0,
                              forces=np.zeros((n, 3)), hessian=h + h.T))
    batch = collate(samples, dtype=torch.float64)
    for name in ("leftnet", "leftnet-df"):
        torch.manual_seed(0)
        model = build_model(name, "tiny").double().train()
        spec = LossSpec((LossTerm("hessian_rows", "per_atom_l2", 1.0),), n_hr=2, hessian_divisor=1.0)
        out = compute_loss(model, batch, spec, training=True, generator=torch.Generator().manual_seed(9))
        grads = torch.autograd.grad(out.total, list(model.parameters()), allow_unused=True)
        # the same loss from full Hessians (batched path, differentiable)
        idx = draw_row_indices(batch.natoms, 2, torch.Generator().manual_seed(9))
        res = model(batch, compute_forces=True, create_graph=True)
        blocks = full_hessian(res["forces"], res["pos"], batch.ptr, create_graph=True)
        per_mol = []
        for b, hb in enumerate(blocks):
            ref = torch.as_tensor(samples[b].hessian)
            rows = [(ref[j] - hb[j]).reshape(-1, 3).norm(dim=1).sum() for j in idx[b].tolist()]
            per_mol.append(torch.stack(rows).mean())
        full = torch.stack(per_mol).mean()
        assert out.total.item() == pytest.approx(full.item(), rel=1e-9), name
        grads_full = torch.autograd.grad(full, list(model.parameters()), allow_unused=True)
        for g1, g2 in zip(grads, grads_full):
            if g1 is None or g2 is None:
                assert (g1 is None or g1.abs().max() == 0) and (g2 is None or g2.abs().max() == 0)
                continue
            torch.testing.assert_close(g1, g2, rtol=1e-7, atol=1e-10)


def test_validation_mode_detached_and_equal_to_training_value():
    rng = np.random.default_rng(6)
    mats = _mats(rng, symmetric=True)
    model = Quadratic(mats, "autograd")
    batch = _labelled(mats, np.random.default_rng(7), shift_h=0.3, shift_f=0.05)
    spec = efh_loss(n_hr=1)
    a = compute_loss(model, batch, spec, training=True, generator=torch.Generator().manual_seed(1))
    with torch.enable_grad():
        b = compute_loss(model, batch, spec, training=False, generator=torch.Generator().manual_seed(1))
    assert not b.total.requires_grad
    assert a.total.item() == pytest.approx(b.total.item())


def test_full_hessian_term_and_missing_labels():
    rng = np.random.default_rng(8)
    mats = _mats(rng, symmetric=True)
    model = Quadratic(mats, "autograd")
    batch = _labelled(mats, np.random.default_rng(9), shift_h=0.25)
    spec = LossSpec((LossTerm("hessian", "l1", 2.0),))
    assert compute_loss(model, batch, spec, training=True).total.item() == pytest.approx(2 * 0.25)
    batch.hessian = None
    with pytest.raises(ValueError, match="needs Hessian labels"):
        compute_loss(model, batch, efh_loss(), training=True)


def test_invalid_terms_and_config_list_valid_values(tmp_path):
    with pytest.raises(ValueError, match="valid: l1, mse"):
        LossTerm("energy", "l2", 1.0)
    with pytest.raises(ValueError, match="valid: energy, forces, hessian_rows, hessian"):
        LossTerm("stress", "l1", 1.0)
    cfg = TrainConfig.from_dict({"loss": {"hessian": 0}, "optim": {"lr": 1e-3}})
    cfg.apply_overrides(["trainer.precision=float64", "model.overrides.hidden_channels=16", "optim.ema_decay=0.99"])
    assert cfg.loss.hessian == 0.0 and cfg.trainer.precision == "float64"
    assert cfg.model.overrides == {"hidden_channels": 16} and cfg.optim.ema_decay == 0.99
    assert cfg.loss_spec().active("hessian_rows") is None
    with pytest.raises(ValueError, match="valid: float32, float64"):
        cfg.apply_overrides(["trainer.precision=half"])
    with pytest.raises(ValueError, match="valid: .*lr.*"):
        cfg.apply_overrides(["optim.learning_rate=1"])
    with pytest.raises(ValueError, match="valid: cosine, plateau, constant"):
        cfg.apply_overrides(["optim.schedule=step"])
    with pytest.raises(ValueError, match="valid: per_atom_l2"):
        cfg.apply_overrides(["loss.hessian_metric=l3"])
    p = tmp_path / "c.yaml"
    cfg.save(p)
    again = TrainConfig.from_yaml(p)
    assert again == cfg


# --- HIP's eigen-subspace term ---------------------------------------------------------------
def _spd_with_soft_modes(rng, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A symmetric (m, m) matrix with distinct eigenvalues (one negative: a saddle) and its eigenpairs."""
    q, _ = np.linalg.qr(rng.normal(size=(m, m)))
    lam = np.sort(np.concatenate([[-0.7], rng.uniform(0.05, 30.0, m - 1)]))
    return (q * lam) @ q.T, lam, q


def test_eigen_term_zero_at_truth_grows_in_the_low_subspace_only():
    from horm.train.losses import eigen_subspace_error

    rng = np.random.default_rng(0)
    k, eps = 4, 0.3
    blocks = [_spd_with_soft_modes(rng, 3 * n) for n in NATOMS]
    natoms = torch.tensor(NATOMS)
    true = torch.cat([torch.as_tensor(h).flatten() for h, _, _ in blocks])

    def err(perturb):
        pred = torch.cat([torch.as_tensor(h + perturb(lam, q)).flatten() for h, lam, q in blocks])
        return eigen_subspace_error(pred, true, natoms, k)

    assert torch.allclose(eigen_subspace_error(true, true, natoms, k), torch.zeros(2, dtype=torch.float64), atol=1e-10)
    # Ĥ = H + ε v₁v₁ᵀ (the TS mode): only the (1,1) entry of V_kᵀ Ĥ V_k − Λ_k moves, by ε
    low = err(lambda lam, q: eps * np.outer(q[:, 0], q[:, 0]))
    assert torch.allclose(low, torch.full((2,), eps / k**2, dtype=torch.float64), rtol=1e-8)
    assert torch.all(err(lambda lam, q: 2 * eps * np.outer(q[:, 0], q[:, 0])) > low)  # grows with ε
    # a large change confined to the stiff modes (outside the k lowest) is invisible to the term
    high = err(lambda lam, q: 50.0 * np.outer(q[:, -1], q[:, -1]) + 20.0 * np.outer(q[:, k], q[:, k]))
    assert torch.allclose(high, torch.zeros(2, dtype=torch.float64), atol=1e-10)
    # k larger than 3n is capped at 3n (then the whole spectrum: mean over (3n)² entries)
    full = eigen_subspace_error(true + 0.0, true, natoms, 1000)
    assert torch.allclose(full, torch.zeros(2, dtype=torch.float64), atol=1e-10)


def test_eigen_term_trains_a_hessian_head():
    from horm.datasets import load_bundled

    torch.manual_seed(0)
    with load_bundled("train") as ds:
        batch = collate([ds[i] for i in (0, 200, 400, 600)])
    model = build_model("hessian_head", "tiny")
    model.atom_ref.zero_()
    cfg = TrainConfig.from_dict({"loss": {"energy": 0.0, "forces": 0.0, "hessian": 0.0, "eigen": 1.0,
                                          "eigen_k": 8}})
    spec = cfg.loss_spec()
    assert spec.active("eigen") is not None and spec.needs_hessian_labels
    assert TrainConfig().loss_spec().active("eigen") is None  # default k = 0: off
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    values = []
    for _ in range(15):
        opt.zero_grad()
        out = compute_loss(model, batch, spec, training=True)
        out.total.backward()
        opt.step()
        values.append(float(out.parts["eigen"]))
    assert values[-1] < 0.7 * values[0], values
    with pytest.raises(ValueError, match=r"eigen_k=-1 is not valid; valid: \[0, "):
        TrainConfig.from_dict({"loss": {"eigen_k": -1}})
