"""LEFTNet and LEFTNet-df: symmetry, smoothness and the Potential/registry contract (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from horm.data.batch import Batch, collate, hessian_blocks
from horm.data.sample import Sample
from horm.models.registry import build_model, build_model_from_config, list_models
from horm.models.graph import full_graph, radius_graph, scatter_mean, scatter_sum
from _molecules import random_molecule, random_rotation, predict

MODES = ("leftnet", "leftnet-df")


@pytest.fixture(scope="module")
def models():
    out = {}
    for name in MODES:
        torch.manual_seed(2)
        out[name] = build_model(name, "tiny").double().eval()
    return out


@pytest.fixture(scope="module")
def mols():
    rng = np.random.default_rng(11)
    return [random_molecule(rng, n) for n in (5, 7)]


@pytest.mark.parametrize("name", MODES)
@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "reflection"])
def test_energy_invariant_forces_hessian_equivariant(models, mols, name, proper):
    rng = np.random.default_rng(3 if proper else 4)
    m = models[name]
    b, ref = predict(m, mols, hessian=True)
    q = random_rotation(rng, proper)
    moved = [s.copy(pos=s.pos @ q.T + rng.normal(size=3) * 5.0) for s in mols]
    _, out = predict(m, moved, hessian=True)
    qt = torch.as_tensor(q)
    assert torch.allclose(out["energy"], ref["energy"], atol=1e-10, rtol=1e-10)
    assert torch.allclose(out["forces"], ref["forces"] @ qt.T, atol=1e-9, rtol=1e-8)
    for h0, h1, n in zip(hessian_blocks(ref["hessian"], b.hess_ptr, b.natoms),
                         hessian_blocks(out["hessian"], b.hess_ptr, b.natoms), b.natoms.tolist()):
        big = torch.block_diag(*[qt] * n)
        assert torch.allclose(h1, big @ h0 @ big.T, atol=1e-8, rtol=1e-7)
    assert ref["forces"].abs().max() > 1e-3  # forces are not trivially zero


@pytest.mark.parametrize("name", MODES)
def test_permutation_equivariance(models, mols, name):
    m = models[name]
    s = mols[1]
    perm = np.random.default_rng(5).permutation(s.natoms)
    _, ref = predict(m, [s], hessian=True)
    _, out = predict(m, [s.copy(numbers=s.numbers[perm], pos=s.pos[perm])], hessian=True)
    assert torch.allclose(out["energy"], ref["energy"], atol=1e-10)
    assert torch.allclose(out["forces"], ref["forces"][perm], atol=1e-10)
    rows = (3 * perm[:, None] + np.arange(3)).reshape(-1)
    n3 = 3 * s.natoms
    assert torch.allclose(out["hessian"].view(n3, n3), ref["hessian"].view(n3, n3)[rows][:, rows], atol=1e-9)


@pytest.mark.parametrize("name", MODES)
def test_collinear_geometry_is_smooth(models, name):
    """Linear molecules make every cross-product axis vanish; the soft frames keep H finite and exact."""
    m = models[name]
    s = Sample(numbers=np.array([8, 6, 8]), pos=np.array([[-1.16, 0, 0], [0, 0, 0], [1.16, 0, 0]]) + 0.3)
    b, out = predict(m, [s], hessian=True)
    h = out["hessian"].view(9, 9)
    assert torch.isfinite(h).all()
    eps = 1e-5
    col = []
    for k in range(9):
        p = torch.zeros(9, dtype=torch.float64)
        p[k] = eps
        bp, bm = b.to(), b.to()
        bp.pos = b.pos + p.view(3, 3)
        bm.pos = b.pos - p.view(3, 3)
        col.append(-(m(bp, create_graph=False)["forces"] - m(bm, create_graph=False)["forces"]).reshape(-1) / (2 * eps))
    fd = torch.stack(col, 1)
    assert torch.allclose(h, fd, atol=1e-5 * float(fd.abs().max()))


def test_radius_graph_equals_full_graph_when_cutoff_covers_molecule(mols):
    torch.manual_seed(0)
    m_r = build_model("leftnet", "tiny", cutoff=30.0, graph="radius").double()
    m_f = build_model_from_config({**m_r.config, "graph": "full"}).double()
    m_f.load_state_dict(m_r.state_dict())
    _, a = predict(m_r, mols)
    _, b = predict(m_f, mols)
    assert torch.allclose(a["energy"], b["energy"], atol=1e-12) and torch.allclose(a["forces"], b["forces"], atol=1e-12)


def test_graphs_and_scatter():
    ptr = torch.tensor([0, 3, 5])
    e = full_graph(ptr)
    assert e.shape == (2, 3 * 2 + 2 * 1)
    mol = torch.tensor([0, 0, 0, 1, 1])
    assert (mol[e[0]] == mol[e[1]]).all() and (e[0] != e[1]).all()
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [5.0, 0, 0], [0, 0, 0], [0.5, 0, 0]])
    r = radius_graph(pos, ptr, cutoff=2.0)
    assert sorted(map(tuple, r.T.tolist())) == [(0, 1), (1, 0), (3, 4), (4, 3)]
    x = torch.arange(5.0)
    assert scatter_sum(x, mol, 2).tolist() == [3.0, 7.0]
    assert scatter_mean(x, mol, 3).tolist() == [1.0, 3.5, 0.0]


@pytest.mark.parametrize("name", MODES)
def test_config_roundtrip_atom_ref_and_float32(models, mols, name):
    m = models[name]
    clone = build_model_from_config(m.config).double()
    clone.load_state_dict(m.state_dict())
    _, a = predict(m, mols)
    clone.set_atom_ref({1: -13.6, 6: -1030.0, 7: -1480.0, 8: -2040.0})
    _, b = predict(clone, mols)
    shift = torch.tensor([sum({1: -13.6, 6: -1030.0, 7: -1480.0, 8: -2040.0}[int(z)] for z in s.numbers) for s in mols],
                         dtype=torch.float64)
    assert torch.allclose(b["energy"] - a["energy"], shift, atol=1e-9)
    assert torch.allclose(b["forces"], a["forces"])  # references do not touch forces
    assert "atom_ref" in clone.state_dict()
    # float32 runs and agrees with float64 to single precision
    m32 = build_model_from_config(m.config)
    m32.load_state_dict({k: v.float() for k, v in m.state_dict().items()})
    out32 = m32(collate(mols), create_graph=False)
    assert out32["forces"].dtype == torch.float32
    assert torch.allclose(out32["forces"].double(), a["forces"], atol=1e-4)


def test_registry_and_presets():
    assert {"leftnet", "leftnet-df"} <= set(list_models())
    assert build_model("leftnet", "tiny").forces_mode == "autograd"
    assert build_model("leftnet-df", "tiny").forces_mode == "direct"
    horm = build_model("leftnet", "horm")
    assert (horm.cfg.num_layers, horm.cfg.hidden_channels, horm.cfg.cutoff, horm.cfg.graph) == (6, 196, 10.0, "full")
    paper = build_model("leftnet-df", "paper")
    assert (paper.cfg.num_layers, paper.cfg.hidden_channels) == (9, 256)
    with pytest.raises(ValueError, match="unknown model .schnet.; valid: .*leftnet"):
        build_model("schnet")
    with pytest.raises(ValueError, match="valid: tiny"):
        build_model("leftnet", "huge")
    with pytest.raises(ValueError, match="unknown option"):
        build_model("leftnet", "tiny", hidden=3)
    with pytest.raises(ValueError, match="valid: radius, full"):
        build_model("leftnet", "tiny", graph="knn")


def test_small_preset_sits_between_tiny_and_paper():
    def n_params(name, preset):
        return sum(p.numel() for p in build_model(name, preset).parameters())

    for name in ("leftnet", "leftnet-df", "hessian_head"):
        assert n_params(name, "tiny") < n_params(name, "small") < n_params(name, "paper"), name
    head = build_model("hessian_head", "small")
    assert head.cfg.backbone_preset == "small"


def test_protocol_outputs(models, mols):
    b: Batch = collate(mols, dtype=torch.float64)
    for m in models.values():
        out = m(b, compute_forces=False)
        assert set(out) == {"energy", "pos"} and out["energy"].shape == (2,)
        out = m(b, compute_hessian=True, create_graph=False)
        assert out["hessian"].shape == (int(b.hess_ptr[-1]),) and torch.equal(out["hess_ptr"], b.hess_ptr)
        assert not out["forces"].requires_grad
        m.train()
        out = m(b)  # training mode: differentiable outputs by default
        assert out["forces"].requires_grad and out["energy"].requires_grad
        m.eval()


@pytest.mark.parametrize("name", MODES)
def test_energy_and_forces_continuous_across_cutoff(name):
    """An atom leaving the radius graph at r_c changes nothing abruptly (every edge term has the cutoff envelope)."""
    torch.manual_seed(4)
    m = build_model(name, "tiny").double().eval()
    for mod in m.modules():  # trained models have non-zero biases; an edge term missing the envelope jumps
        if isinstance(mod, torch.nn.Linear) and mod.bias is not None:
            torch.nn.init.normal_(mod.bias, std=0.1)
    rc = m.cfg.cutoff
    base = np.array([[0.0, 0, 0], [1.1, 0, 0], [0.3, 1.0, 0]])
    outs = []
    for x in (rc - 1e-7, rc + 1e-7):
        s = Sample(numbers=np.array([6, 1, 8, 1]), pos=np.vstack([base, [[x, 0, 0]]]))
        outs.append(m(collate([s], dtype=torch.float64), create_graph=False))
    assert abs(float(outs[0]["energy"] - outs[1]["energy"])) < 1e-6
    assert torch.allclose(outs[0]["forces"], outs[1]["forces"], atol=1e-6)
