"""HORM's published LEFTNet / LEFTNet-df: checkpoint layout, reference outputs, symmetry.

Fixtures: ../shared/reference/horm_models/{LEFTNet,LEFTNet-df} (manifest at the published size,
seeded small weights and the reference code's energies, forces and Hessians for 4 molecules).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from conftest import SHARED
from horm.data.batch import collate, hessian_blocks
from horm.data.sample import Sample
from horm.models.registry import build_model, build_model_from_config, list_models
from horm.models.published import FORMATS
from horm.models.published.leftnet_blocks import legacy_cross
from _molecules import random_rotation

REF = SHARED / "reference" / "horm_models"
VARIANTS = {"LEFTNet": "horm-leftnet", "LEFTNet-df": "horm-leftnet-df"}
# the fixture READMEs' suggested tolerances, relative to max|float64 reference| of each array
TOL = {
    "LEFTNet": {torch.float64: dict(energy=1e-13, forces=1e-10, hessian=3e-11),
                torch.float32: dict(energy=2e-4, forces=9e-2, hessian=1e-2)},
    "LEFTNet-df": {torch.float64: dict(energy=1e-13, forces=2e-11, hessian=1e-10),
                   torch.float32: dict(energy=3e-4, forces=4e-2, hessian=4e-2)},
}


def _dir(ref_name: str):
    d = REF / ref_name
    if not (d / "small" / "reference.npz").exists():
        pytest.skip(f"published-model fixtures not found at {d} (../shared is provided in CI)")
    return d


def _fixture(ref_name: str):
    from safetensors.numpy import load_file

    d = _dir(ref_name)
    manifest = json.loads((d / "manifest_full.json").read_text())
    weights = {k.removeprefix("potential."): torch.from_numpy(v)
               for k, v in load_file(str(d / "small" / "weights.safetensors")).items()}
    return manifest, weights, np.load(d / "small" / "reference.npz", allow_pickle=False)


def _format(model: str):
    list_models()  # imports the published package, which registers the formats
    return next(f for f in FORMATS if f.model == model)


def _small_model(ref_name: str):
    manifest, weights, ref = _fixture(ref_name)
    hparams = manifest["hyper_parameters_as_saved"]
    cfg = _format(VARIANTS[ref_name]).config(hparams, weights)
    model = build_model_from_config(cfg)
    weights = {**weights, "atom_ref": torch.zeros_like(model.atom_ref)}
    model.load_state_dict(weights, strict=True)
    return model.eval(), ref


def _molecule(ref, k: int, dtype):
    return collate([Sample(numbers=ref[f"mol{k}_z"], pos=ref[f"mol{k}_pos"])], dtype=dtype)


@pytest.mark.parametrize("ref_name", VARIANTS)
def test_published_state_dict_matches_manifest(ref_name):
    manifest, _, _ = _fixture(ref_name)
    expected = {e["key"].removeprefix("potential."): tuple(e["shape"]) for e in manifest["state_dict"]}
    model = build_model(VARIANTS[ref_name], "published")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items() if k != "atom_ref"}
    assert got == expected
    assert sum(p.numel() for p in model.parameters()) == manifest["num_parameters"]
    assert model.forces_mode == ("direct" if ref_name.endswith("-df") else "autograd")


@pytest.mark.parametrize("ref_name", VARIANTS)
def test_checkpoint_format_recognises_and_sizes(ref_name):
    manifest, weights, _ = _fixture(ref_name)
    hparams = manifest["hyper_parameters_as_saved"]  # saved sizes are train.py's, not the network's
    claims = [f.model for f in FORMATS if f.model in VARIANTS.values() and f.recognise(hparams, weights)]
    assert claims == [VARIANTS[ref_name]]
    cfg = _format(VARIANTS[ref_name]).config(hparams, weights)
    small = json.loads((_dir(ref_name) / "small" / "config.json").read_text())["model_config"]
    assert (cfg["num_layers"], cfg["hidden_channels"], cfg["num_radial"], cfg["cutoff"]) == (
        small["num_layers"], small["hidden_channels"], small["num_radial"], small["cutoff"])
    full = build_model(VARIANTS[ref_name], "published").state_dict()
    full.pop("atom_ref")
    big = _format(VARIANTS[ref_name]).config(hparams, full)
    assert (big["num_layers"], big["hidden_channels"], big["num_radial"]) == (6, 196, 96)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("ref_name", VARIANTS)
def test_reproduces_reference_outputs(ref_name, dtype):
    model, ref = _small_model(ref_name)
    model.to(dtype)
    tol = TOL[ref_name][dtype]
    for k in range(4):
        out = model(_molecule(ref, k, dtype), compute_hessian=True, create_graph=False)
        for key, t in tol.items():
            want = ref[f"mol{k}_f64_A_{key}"]
            got = out[key].double().numpy().reshape(want.shape)
            rel = np.abs(got - want).max() / np.abs(want).max()
            assert rel <= t, f"mol{k} {key}: relative deviation {rel:.2e} > {t:.0e}"


@pytest.mark.parametrize("ref_name", VARIANTS)
def test_symmetry_and_batch_independence(ref_name):
    """Rigid motions move forces and Hessians with the molecule; batched = one at a time."""
    model, ref = _small_model(ref_name)
    model.double()
    mols = [Sample(numbers=ref[f"mol{k}_z"], pos=ref[f"mol{k}_pos"].astype(np.float64)) for k in (0, 1)]
    b = collate(mols, dtype=torch.float64)
    out = model(b, compute_hessian=True, create_graph=False)
    rng = np.random.default_rng(7)
    q = random_rotation(rng)
    qt = torch.as_tensor(q)
    moved = collate([m.copy(pos=m.pos @ q.T + rng.normal(size=3) * 3.0) for m in mols], dtype=torch.float64)
    mv = model(moved, compute_hessian=True, create_graph=False)
    assert torch.allclose(mv["energy"], out["energy"], rtol=1e-12, atol=0)
    fmax = out["forces"].abs().max()
    assert fmax > 1e-3
    assert (mv["forces"] - out["forces"] @ qt.T).abs().max() <= 1e-8 * fmax
    blocks = hessian_blocks(out["hessian"], b.hess_ptr, b.natoms)
    for h0, h1, n in zip(blocks, hessian_blocks(mv["hessian"], b.hess_ptr, b.natoms), b.natoms.tolist()):
        big = torch.block_diag(*[qt] * n)
        assert (h1 - big @ h0 @ big.T).abs().max() <= 1e-8 * h0.abs().max()
    for k, mol in enumerate(mols):  # the same molecules one at a time
        one = model(collate([mol], dtype=torch.float64), compute_hessian=True, create_graph=False)
        sl = slice(int(b.ptr[k]), int(b.ptr[k + 1]))
        assert torch.allclose(one["energy"], out["energy"][k:k + 1], rtol=1e-12, atol=0)
        assert (one["forces"] - out["forces"][sl]).abs().max() <= 1e-10 * fmax
        assert (one["hessian"].reshape(blocks[k].shape) - blocks[k]).abs().max() <= 1e-10 * blocks[k].abs().max()


def test_legacy_cross_is_torch_default():
    """The reference calls torch.cross without dim: with exactly 3 rows it crosses along axis 0."""
    g = torch.Generator().manual_seed(0)
    for n in (3, 4):
        a, b = torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = torch.cross(a, b)
        assert torch.equal(legacy_cross(a, b), want)
    assert not torch.allclose(legacy_cross(a[:3], b[:3]), torch.linalg.cross(a[:3], b[:3], dim=1))


def test_rejects_elements_outside_one_hot():
    model = build_model("horm-leftnet", "small")
    b = collate([Sample(numbers=np.array([6, 17]), pos=np.array([[0.0, 0, 0], [1.8, 0, 0]]))])
    with pytest.raises(ValueError, match="Z=\\[17\\]"):
        model(b)


@pytest.mark.parametrize("name", VARIANTS.values())
def test_zero_norms_give_finite_derivatives(name):
    """Single atom, diatomic, linear CO2: the reference's sqrt(0) gradients are NaN; ours are finite."""
    torch.manual_seed(0)
    model = build_model(name, "small").double().eval()
    mols = [Sample(numbers=np.array([1]), pos=np.zeros((1, 3))),
            Sample(numbers=np.array([6, 8]), pos=np.array([[0.0, 0, 0], [0, 0, 1.2]])),
            Sample(numbers=np.array([8, 6, 8]), pos=np.array([[0.0, 0, -1.16], [0, 0, 0], [0, 0, 1.16]]))]
    out = model(collate(mols, dtype=torch.float64), compute_hessian=True, create_graph=False)
    for key in ("energy", "forces", "hessian"):
        assert bool(torch.isfinite(out[key]).all()), key
