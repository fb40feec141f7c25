"""hessian_head: a Hessian predicted directly (no autograd) must still be a Hessian.

Physics stated here, all in float64 on a tiny LEFTNet backbone:
- rotations and mirror images: H(Q r) = Q_b H(r) Q_bᵀ with Q_b = diag(Q, …, Q) (3N×3N);
- H = Hᵀ bitwise (built that way, not symmetrised afterwards);
- relabelling atoms permutes the 3×3 blocks;
- molecules of a batch do not see each other;
- training on the full-Hessian L1 loss lowers it; the rows term reads the head's Hessian;
- the ASE calculator, the model file round trip and the evaluation use the head's Hessian.
"""

from __future__ import annotations

import dataclasses
import numpy as np
import pytest
import torch

from horm.data.batch import collate, hessian_blocks
from horm.models.registry import build_model, build_model_from_config, list_models
from _molecules import random_molecule, random_rotation as random_orthogonal

SMALL = dict(backbone_overrides={"hidden_channels": 16, "num_layers": 1, "num_radial": 8}, head_channels=8,
             num_radial=8)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(5)
    m = build_model("hessian_head", "tiny", **SMALL).eval()
    with torch.no_grad():  # non-zero biases everywhere, so no term hides behind a zero init
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.double()  # float32-representable weights: a model file round trip is exact


@pytest.fixture(scope="module")
def mols():
    rng = np.random.default_rng(7)
    return [random_molecule(rng, n) for n in (6, 4)]


def hessians(model, samples) -> list[torch.Tensor]:
    b = collate(samples, dtype=torch.float64)
    out = model(b, compute_hessian=True, create_graph=False)
    assert out["hessian"].shape == (int(b.hess_ptr[-1]),)
    return hessian_blocks(out["hessian"], b.hess_ptr, b.natoms)


def test_registered_and_direct():
    assert "hessian_head" in list_models()
    m = build_model("hessian_head", "tiny", **SMALL)
    assert m.hessian_mode == "direct" and m.forces_mode == "autograd"
    with pytest.raises(ValueError, match="valid"):
        build_model("hessian_head", "tiny", backbone="nope")


@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "reflection"])
def test_hessian_equivariant(model, mols, proper):
    rng = np.random.default_rng(1 if proper else 2)
    q = random_orthogonal(rng, proper)
    h0 = hessians(model, mols)
    moved = [s.copy(pos=s.pos @ q.T + rng.normal(size=3) * 3.0) for s in mols]
    h1 = hessians(model, moved)
    qt = torch.from_numpy(q)
    for a, b, s in zip(h0, h1, mols):
        qb = torch.block_diag(*[qt] * s.natoms)
        assert a.abs().max() > 1e-2  # a non-trivial Hessian
        torch.testing.assert_close(b, qb @ a @ qb.T, atol=1e-10, rtol=1e-9)


def test_exactly_symmetric(model, mols):
    for h in hessians(model, mols):
        assert torch.equal(h, h.T)
        assert h.diagonal().abs().min() > 0


def test_permutation_equivariant(model, mols):
    rng = np.random.default_rng(3)
    s = mols[0]
    perm = rng.permutation(s.natoms)
    (h,) = hessians(model, [s])
    (hp,) = hessians(model, [s.copy(pos=s.pos[perm], numbers=s.numbers[perm])])
    idx = torch.from_numpy((3 * perm[:, None] + np.arange(3)).reshape(-1))
    torch.testing.assert_close(hp, h[idx][:, idx], atol=1e-10, rtol=1e-9)


def test_no_leakage_across_molecules(model, mols):
    a, b = mols
    (h_alone,) = hessians(model, [a])
    h_pair = hessians(model, [a, b])
    moved_b = b.copy(pos=b.pos + np.random.default_rng(4).normal(size=b.pos.shape) * 0.3)
    h_moved = hessians(model, [a, moved_b])
    torch.testing.assert_close(h_pair[0], h_alone, atol=1e-12, rtol=0)
    torch.testing.assert_close(h_moved[0], h_alone, atol=1e-12, rtol=0)
    assert (h_moved[1] - h_pair[1]).abs().max() > 1e-4  # b's own block does move


def test_energy_forces_are_the_backbones(model, mols):
    """The head adds a Hessian; energy and forces are the backbone's (F = −∇E)."""
    b = collate(mols, dtype=torch.float64)
    out = model(b, compute_hessian=True, create_graph=False)
    ref = model.backbone(b, compute_forces=True, create_graph=False)
    torch.testing.assert_close(out["forces"], ref["forces"], atol=1e-12, rtol=0)
    torch.testing.assert_close(out["energy"], ref["energy"] + model.reference_energy(b), atol=1e-10, rtol=0)


@pytest.fixture(scope="module")
def four(horm_samples):  # conftest: the shared HORM sample (skips when ../shared is absent)
    return horm_samples[:4]


def test_training_reduces_full_hessian_loss(four):
    from horm.data.refs import fit_atom_references
    from horm.train.losses import LossSpec, LossTerm, compute_loss

    torch.manual_seed(0)
    m = build_model("hessian_head", "tiny", **SMALL).double().train()
    m.set_atom_ref(fit_atom_references([s.numbers for s in four], [s.energy for s in four]))
    batch = collate(four, dtype=torch.float64)
    spec = LossSpec((LossTerm("energy", "l1", 4.0), LossTerm("forces", "l1", 100.0),
                     LossTerm("hessian", "l1", 10.0)))
    opt = torch.optim.Adam(m.parameters(), lr=5e-3)
    first = compute_loss(m, batch, spec, training=False).parts["hessian"].item()
    for _ in range(25):
        opt.zero_grad()
        out = compute_loss(m, batch, spec, training=True)
        out.total.backward()
        opt.step()
    last = compute_loss(m, batch, spec, training=False).parts["hessian"].item()
    assert last < 0.7 * first, (first, last)


def test_rows_term_reads_the_head_hessian(four):
    from horm.data.batch import gather_hessian_rows
    from horm.hessian.autograd import draw_row_indices
    from horm.train.losses import LossSpec, LossTerm, compute_loss, hessian_rows_error

    m = build_model("hessian_head", "tiny", **SMALL).double().eval()
    batch = collate(four, dtype=torch.float64)
    spec = LossSpec((LossTerm("hessian_rows", "per_atom_l2", 1.0),), n_hr=2)
    got = compute_loss(m, batch, spec, training=False, generator=torch.Generator().manual_seed(9))
    idx = draw_row_indices(batch.natoms, 2, torch.Generator().manual_seed(9))
    h = m(batch, compute_hessian=True, create_graph=False)["hessian"]
    rows = gather_hessian_rows(dataclasses.replace(batch, hessian=h), idx)
    want = hessian_rows_error(rows, gather_hessian_rows(batch, idx), idx, batch, "per_atom_l2").mean()
    torch.testing.assert_close(got.parts["hessian_rows"], want)


def test_calculator_and_saved_model_use_the_head(model, mols, tmp_path):
    from horm.models.files import load_model, save_model
    from horm.calculators.potential import HormCalculator, load_potential

    s = mols[0]
    (h_head,) = hessians(model, [s])
    atoms = s.to_atoms()
    h_calc = HormCalculator(model).get_hessian(atoms)
    np.testing.assert_array_equal(h_calc, h_head.numpy())
    # not the autograd Hessian of the backbone's energy
    b = collate([s], dtype=torch.float64)
    h_auto = model.backbone(b, compute_hessian=True, create_graph=False)["hessian"].view(h_calc.shape)
    assert np.abs(h_calc - h_auto.numpy()).max() > 1e-3
    # model file round trip (what horm evaluate / horm ts load)
    path = save_model(model, tmp_path / "model.pt")
    loaded, info = load_model(path)
    assert info["config"]["name"] == "hessian_head"
    assert build_model_from_config(model.config).config == model.config
    np.testing.assert_allclose(load_potential(str(path)).get_hessian(atoms), h_calc, atol=1e-12)


def test_evaluation_reports_zero_asymmetry(model, four):
    from horm.evaluate.metrics import evaluate_model

    metrics, _ = evaluate_model(model, four[:2], batch_size=2)
    assert np.all(metrics["asym_mae"] == 0.0) and np.all(metrics["asym_rel"] == 0.0)
    assert np.all(np.isfinite(metrics["hessian_mae"])) and np.all(np.isfinite(metrics["eigval_mae"]))
