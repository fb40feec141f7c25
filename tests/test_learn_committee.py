"""The committee's predictions: a direct Hessian head against its own autograd Hessian, and
the models committee (untrained tiny models in float64; no data needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from horm.data.sample import Sample
from horm.errors import UsageError
from horm.learn.committee import committee_predictions, score_pool
from horm.models.registry import build_model

WATER = Sample(numbers=np.array([8, 1, 1]), pos=np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.05]]))


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return build_model("hessian_head", "tiny").double().eval(), build_model("leftnet", "tiny").double().eval()


def _fd_hessian(model, s: Sample, h: float = 1e-4) -> np.ndarray:
    """−∂F/∂r by central differences of the model's own forces."""
    from horm.data.batch import collate

    def forces(pos):
        b = collate([Sample(numbers=s.numbers, pos=pos)], dtype=torch.float64)
        with torch.enable_grad():
            return model(b, compute_forces=True)["forces"].detach().numpy().reshape(-1)

    n3 = 3 * len(s.numbers)
    out = np.zeros((n3, n3))
    for j in range(n3):
        d = np.zeros(n3)
        d[j] = h
        out[:, j] = -(forces(s.pos + d.reshape(-1, 3)) - forces(s.pos - d.reshape(-1, 3))) / (2 * h)
    return out


def test_head_committee_pairs_the_direct_head_with_the_jacobian_of_the_same_forces(models):
    head, _ = models
    [(f, h)] = committee_predictions([head], WATER, "head")
    assert f.shape == (2, 3, 3) and h.shape == (2, 9, 9)
    assert np.allclose(f[0], f[1])  # one model, one set of forces
    assert np.allclose(h[1], _fd_hessian(head, WATER), atol=1e-5)  # the autograd half is d²E/dr² of the model
    assert np.abs(h[0] - h[1]).max() > 1e-3  # an untrained head disagrees with it
    assert score_pool([head], [WATER], "eigen", "head")[0] > 0
    with pytest.raises(UsageError):
        score_pool([head], [WATER], "forces", "head")  # the pair shares its forces


def test_a_committee_of_one_model_twice_scores_zero_and_two_models_do_not(models):
    head, leftnet = models
    assert score_pool([leftnet, leftnet], [WATER], "eigen")[0] == pytest.approx(0.0, abs=1e-9)
    assert score_pool([leftnet, leftnet], [WATER], "forces")[0] == pytest.approx(0.0, abs=1e-12)
    assert score_pool([leftnet, head], [WATER], "hessian")[0] > 1e-3
    with pytest.raises(UsageError):
        committee_predictions([leftnet], WATER, "models")  # one model is no committee
    with pytest.raises(UsageError):
        committee_predictions([leftnet, leftnet], WATER, "head")  # no direct head among them
