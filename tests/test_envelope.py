"""Cutoff envelopes and what they buy: continuous autograd Hessians when a pair crosses the cutoff.

Stated here:
- the polynomial envelope is 1 at 0, 0 at r_c, decreases monotonically, and its value, slope and
  curvature vanish at r_c (C²); the cosine envelope's curvature does not (C¹ only);
- for the autograd-force models ``leftnet`` and ``alphanet`` the Hessian is continuous when one
  atom pair crosses r_c: |H(r_c − δ) − H(r_c + δ)| shrinks like δ; with the old cosine envelope
  the same measure shows a finite jump.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import horm.models.alphanet
import horm.models.leftnet
from horm.data.batch import collate
from horm.data.sample import Sample
from horm.models.registry import build_model
from horm.models.envelope import cosine_cutoff, polynomial_cutoff


def derivatives(f, d: torch.Tensor):
    """f, f', f'' at the points d (float64, by autograd)."""
    d = d.clone().requires_grad_(True)
    y = f(d)
    (g,) = torch.autograd.grad(y.sum(), d, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), d)
    return y.detach(), g.detach(), h


def test_polynomial_envelope_is_c2_and_cosine_is_not():
    rc = 5.0
    d = torch.linspace(0.0, rc, 2001, dtype=torch.float64)
    f = polynomial_cutoff(d, rc)
    assert f[0] == 1.0 and abs(float(f[-1])) < 1e-15 and (f.diff() <= 1e-15).all() and (f >= 0).all()
    at = torch.tensor([rc - 1e-9], dtype=torch.float64)
    for p in (3, 6, 9):
        y, g, h = derivatives(lambda x: polynomial_cutoff(x, rc, p), at)
        assert abs(float(y)) < 1e-12 and abs(float(g)) < 1e-9 and abs(float(h)) < 1e-6, p
    y, g, h = derivatives(lambda x: cosine_cutoff(x, rc), at)
    assert abs(float(y)) < 1e-12 and abs(float(g)) < 1e-9
    assert float(h) == pytest.approx(0.5 * (np.pi / rc) ** 2, rel=1e-6)  # the curvature jump to 0 beyond r_c
    beyond = torch.tensor([rc, rc + 1.0], dtype=torch.float64)
    assert torch.equal(polynomial_cutoff(beyond, rc), torch.zeros(2, dtype=torch.float64))


def hessian_jump(name: str, delta: float) -> tuple[float, float]:
    """max |H(r_c − δ) − H(r_c + δ)| and max |H| when atom 3 crosses the cutoff of atom 0
    (it keeps other neighbours); tiny preset, float64, non-zero biases as in a trained model."""
    torch.manual_seed(4)
    m = build_model(name, "tiny").double().eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.Linear) and mod.bias is not None:
            torch.nn.init.normal_(mod.bias, std=0.1)
    rc = m.cfg.cutoff
    base = np.array([[0.0, 0, 0], [1.1, 0, 0], [0.3, 1.0, 0]])
    hs = []
    for x in (rc - delta, rc + delta):
        s = Sample(numbers=np.array([6, 1, 8, 1]), pos=np.vstack([base, [[x, 0, 0]]]))
        hs.append(m(collate([s], dtype=torch.float64), compute_hessian=True, create_graph=False)["hessian"])
    return float((hs[0] - hs[1]).abs().max()), float(hs[0].abs().max())


@pytest.mark.parametrize("name", ["leftnet", "alphanet"])
def test_autograd_hessian_continuous_across_cutoff(name, monkeypatch):
    delta = 1e-6
    jump, scale = hessian_jump(name, delta)
    assert scale > 0.1  # a Hessian worth comparing
    assert jump < 1e-4 * scale, jump  # continuous: O(δ · |∂H/∂r|), here ~1e-6 eV/Å²
    # the same measure on the old C¹ cosine envelope: a finite jump (6.8e-3 / 3.2e-3 eV/Å²)
    for module in (horm.models.leftnet, horm.models.alphanet):
        monkeypatch.setattr(module, "polynomial_cutoff", cosine_cutoff)
    old_jump, _ = hessian_jump(name, delta)
    assert old_jump > 1e-3 and old_jump > 100 * jump, (old_jump, jump)
