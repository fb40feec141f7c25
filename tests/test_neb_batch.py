"""A NEB band evaluated in one batched model call per update gives the per-image numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("sella")


def _setup():
    from horm.data.xyz import read_reaction
    from horm.datasets import bundled_path
    from horm.models.registry import build_model

    r, p = read_reaction(bundled_path("t1x_xtb_large") / "ts_reactions" / "rxn102.xyz")
    torch.manual_seed(0)
    return r.to_atoms(), p.to_atoms(), build_model("leftnet", "tiny")


def _forward_counter(model):
    n = {"calls": 0}
    model.register_forward_hook(lambda *_: n.__setitem__("calls", n["calls"] + 1))
    return n


def test_batched_band_matches_per_image_calls_in_float64():
    from horm.calculators.potential import HormCalculator
    from horm.ts.path import PathSettings, find_path, interpolate

    reactant, product, model = _setup()
    calc = HormCalculator(model, check_domain=False, dtype="float64")
    images, _, _ = interpolate(reactant, product, 8, "geodesic")
    many = calc.evaluate_many(images)
    for a, o in zip(images, many):
        one = calc.evaluate(a, hessian=False)
        assert o["energy"] == pytest.approx(one["energy"], abs=1e-10)
        np.testing.assert_allclose(o["forces"], one["forces"], atol=1e-10)

    s = PathSettings(n_images=8, max_steps=4)
    fwd = _forward_counter(model)
    batched = find_path(reactant, product, calc, s)
    n_batched = fwd["calls"]
    plain = HormCalculator(model, check_domain=False, dtype="float64")
    plain.evaluate_many = lambda atoms_list: None  # the per-image path
    fwd["calls"] = 0
    ref = find_path(reactant, product, plain, s)
    assert batched.error is None and ref.error is None
    np.testing.assert_allclose(batched.energies, ref.energies, atol=1e-8)
    for a, b in zip(batched.images, ref.images):
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-8)
    # the same geometries were evaluated (the call counts are per geometry) ...
    assert calc.counts == plain.counts
    # ... in one forward pass per band update instead of one per image
    assert n_batched * 5 <= fwd["calls"], (n_batched, fwd["calls"])


def test_engines_do_not_batch_and_a_moved_image_is_recomputed():
    from horm.calculators.potential import HormCalculator

    reactant, _, model = _setup()
    calc = HormCalculator(model, check_domain=False, dtype="float64")
    a, b = reactant.copy(), reactant.copy()
    b.positions[0, 0] += 0.05
    calc.prefetch([a, b])
    moved = b.copy()
    moved.positions[1, 1] += 0.01  # not a prefetched geometry: a real evaluation
    moved.calc = calc
    np.testing.assert_allclose(moved.get_forces(), calc.evaluate(moved, hessian=False)["forces"], atol=1e-10)
    b.calc = calc
    np.testing.assert_allclose(b.get_forces(), calc.evaluate(b, hessian=False)["forces"], atol=1e-10)

    class Engine:
        def compute(self, sample, want):  # pragma: no cover - never called here
            raise AssertionError

    assert HormCalculator(Engine()).evaluate_many([a, b]) is None


def test_geodesic_band_is_the_same_on_every_run_and_leaves_the_global_rng_alone():
    """geodesic-interpolate draws from numpy's global random state; the band must not depend
    on it (it made TS-search outcomes vary between identical runs)."""
    pytest.importorskip("geodesic_interpolate")
    from horm.ts.path import interpolate

    reactant, product, _ = _setup()
    np.random.seed(1)
    a, used, _ = interpolate(reactant, product, 8, "geodesic")
    after = np.random.random()
    np.random.seed(2)
    b, _, _ = interpolate(reactant, product, 8, "geodesic")
    assert used == "geodesic"
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.positions, y.positions)
    np.random.seed(1)
    assert np.random.random() == after  # the caller's stream continues as if nothing ran
