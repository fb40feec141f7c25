"""HIP's EquiformerV2 with the Hessian head (hip-equiformer_v2) against the reference fixtures.

Fixtures: ../shared/reference/horm_models/HIP-EquiformerV2 (BurgerAndreas/hip df045d7, recorded
rolls of both graphs).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _published_eqv2 import (autograd_hessian_deviation, check_within, four_molecules, load_small, manifest_keys,
                             max_rel, reference, split)
from horm.models.registry import build_model, build_model_from_config
from horm.models.published import FORMATS

MODEL, NAME = "HIP-EquiformerV2", "hip-equiformer_v2"
TOL = {torch.float64: {"energy": 1e-13, "forces": 1e-13, "hessian": 1e-13, "hessian_pred": 1e-13},
       torch.float32: {"energy": 2e-6, "forces": 4e-5, "hessian": 4e-4, "hessian_pred": 2e-5}}


def test_published_state_dict_keys_and_shapes():
    m = build_model(NAME, "published")
    got = {k: tuple(v.shape) for k, v in m.state_dict().items() if k != "atom_ref"}
    assert got == manifest_keys(MODEL)
    assert sum(p.numel() for p in m.parameters()) == 19_439_365
    sd = {k: v for k, v in m.state_dict().items() if k != "atom_ref"}
    assert [f.model for f in FORMATS if f.recognise(None, sd)] == [NAME]
    assert build_model_from_config(next(f for f in FORMATS if f.model == NAME).config(None, sd)).config == m.config


def _check_outputs(dtype, autograd_mols):
    """Head pass on the 4 molecules in one batch (energy, forces, head Hessian), then the autograd
    Jacobian of the forces (hessian_from="autograd") for ``autograd_mols``, one at a time."""
    ref = reference(MODEL)
    m = load_small(MODEL, NAME, dtype)
    batch, rolls, head_rolls = four_molecules(ref, dtype, head_rolls=True)
    m.replay_rolls(rolls, head_rolls)
    out = m(batch, compute_hessian=True, create_graph=False)
    # HIP divides by the batch-average atom count: undo it to compare with single-molecule runs
    avg = float(batch.natoms.sum()) / batch.num_graphs
    worst = {}
    for k, mol in enumerate(split(out, batch)):
        mol["energy"] = mol["energy"] * avg / int(batch.natoms[k])
        for key, ref_key in (("energy", "energy"), ("forces", "forces"), ("hessian", "hessian_pred")):
            worst[ref_key] = max(worst.get(ref_key, 0.0), max_rel(mol[key], ref[f"mol{k}_f64_A_{ref_key}"]))
    m.hessian_from = "autograd"
    worst["hessian"] = autograd_hessian_deviation(m, ref, dtype, autograd_mols, head_rolls=True)
    check_within(NAME, dtype, worst, TOL[dtype])


# float32: Hessians of mol0/mol1 only (mol2/3 run the same code path and add ~15 s)
@pytest.mark.parametrize(("dtype", "mols"), [(torch.float64, range(4)), (torch.float32, range(2))], ids=["f64", "f32"])
def test_reproduces_reference(dtype, mols):
    _check_outputs(dtype, autograd_mols=mols)


def test_head_hessian_is_symmetric_and_rotates_with_the_molecule():
    """H = Hᵀ exactly (assembly adds each block and its transpose); H(R x) = (R⊗) H (R⊗)ᵀ up to the
    fixed S² grids' quadrature error; and energy depends on the batch through the atom-count divisor."""
    from _molecules import random_rotation
    from horm.data.batch import collate
    from horm.data.sample import Sample

    ref = reference(MODEL)
    m = load_small(MODEL, NAME, torch.float64)
    z, pos = ref["mol1_z"], ref["mol1_pos"].astype(np.float64)
    n = len(z)
    rot = random_rotation(np.random.default_rng(5))
    big = np.kron(np.eye(n), rot)

    def run(p, extra=()):
        b = collate([Sample(numbers=z, pos=p), *extra], dtype=torch.float64)
        return m(b, compute_hessian=True, create_graph=False)

    out = run(pos)
    h = out["hessian"][: (3 * n) ** 2].reshape(3 * n, 3 * n).numpy()
    h_rot = run(pos @ rot.T)["hessian"].reshape(3 * n, 3 * n).numpy()
    assert np.array_equal(h, h.T)
    assert np.abs(h_rot - big @ h @ big.T).max() / np.abs(h).max() < 1e-4
    other = Sample(numbers=ref["mol0_z"], pos=ref["mol0_pos"].astype(np.float64))
    pair = run(pos, extra=(other,))
    e_single, e_pair = float(out["energy"][0]), float(pair["energy"][0])
    assert abs(e_pair * (n + len(other.numbers)) / 2 / n - e_single) < 1e-12 * abs(e_single)
    assert abs(e_pair - e_single) > 1e-3 * abs(e_single)
    assert np.abs(pair["hessian"][: (3 * n) ** 2].reshape(3 * n, 3 * n).numpy() - h).max() < 1e-12 * np.abs(h).max()
