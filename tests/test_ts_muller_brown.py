"""TS machinery on the analytic Müller–Brown surface: the saddle it finds is a true
first-order saddle (exactly one negative Hessian eigenvalue) at the known place, and
the IRC from it falls into the two minima it connects."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

pytest.importorskip("sella")

from horm.ts.irc import IRCSettings, run_irc  # noqa: E402
from horm.ts.muller_brown import MINIMA, SADDLES, MullerBrownCalculator, muller_brown, muller_brown_atoms  # noqa: E402
from horm.ts.path import PathSettings, find_path  # noqa: E402
from horm.ts.tsopt import TSOptSettings, optimize_ts  # noqa: E402

TOY = TSOptSettings(molecule=False, fmax=1e-3)


def test_analytic_derivatives_match_finite_differences():
    x, y, d = 0.1, 0.7, 1e-5
    _, g, h = muller_brown(x, y)
    gx = (muller_brown(x + d, y)[0] - muller_brown(x - d, y)[0]) / (2 * d)
    gy = (muller_brown(x, y + d)[0] - muller_brown(x, y - d)[0]) / (2 * d)
    np.testing.assert_allclose(g, [gx, gy], rtol=1e-6)
    hx = (muller_brown(x + d, y)[1] - muller_brown(x - d, y)[1]) / (2 * d)
    np.testing.assert_allclose(h[0], hx, rtol=1e-5)
    np.testing.assert_allclose(h, h.T)


def test_ci_neb_then_sella_finds_the_saddle_between_a_and_c():
    calc = MullerBrownCalculator()
    r, p = muller_brown_atoms(*MINIMA["A"]), muller_brown_atoms(*MINIMA["C"])
    path = find_path(r, p, calc, PathSettings(interpolation="linear", n_images=9, fmax=0.5, max_steps=500,
                                               align=False))
    assert path.error is None and path.converged
    # the band's highest image sits above both minima
    assert path.energies[path.ts_index] > max(path.energies[0], path.energies[-1])
    ts = optimize_ts(path.ts_guess, calc, TOY)
    assert ts.success, ts.record()
    eig = np.linalg.eigvalsh(ts.hessian)
    assert int(np.sum(eig < 0)) == 1
    assert ts.n_imaginary == 1
    np.testing.assert_allclose(ts.atoms.positions[0, :2], SADDLES["S1"], atol=2e-3)
    assert ts.energy == pytest.approx(-40.665, abs=0.01)
    assert calc.counts["hessian"] >= 2  # Sella used the calculator's Hessian


def test_a_band_that_runs_out_of_steps_is_not_converged():
    calc = MullerBrownCalculator()
    r, p = muller_brown_atoms(*MINIMA["A"]), muller_brown_atoms(*MINIMA["C"])
    for optimizer in ("ode", "fire"):
        path = find_path(r, p, calc, PathSettings(interpolation="linear", n_images=9, fmax=0.5, max_steps=3,
                                                   optimizer=optimizer, align=False))
        assert path.error is None and not path.converged and path.record()["success"] is False


def test_sella_from_a_displaced_start_finds_the_other_saddle():
    calc = MullerBrownCalculator()
    start = muller_brown_atoms(0.15, 0.35)
    ts = optimize_ts(start, calc, TOY)
    assert ts.success and ts.n_imaginary == 1
    np.testing.assert_allclose(ts.atoms.positions[0, :2], SADDLES["S2"], atol=2e-3)


def test_the_ts_optimisation_keeps_every_iterate_with_its_own_energy():
    calc = MullerBrownCalculator()
    start = muller_brown_atoms(0.15, 0.35)
    ts = optimize_ts(start, calc, TOY)
    assert len(ts.iterates) == ts.steps + 1  # the start and one geometry per Sella step
    np.testing.assert_allclose(ts.iterates[0].positions, start.positions)
    np.testing.assert_allclose(ts.iterates[-1].positions, ts.atoms.positions)
    assert len({a.positions[0, :2].round(6).tobytes() for a in ts.iterates}) == len(ts.iterates)  # it moved every step
    for a in ts.iterates:  # the recorded energy is that of the recorded geometry
        assert a.info["energy"] == pytest.approx(calc.get_potential_energy(a.copy()), abs=1e-9)


def test_a_minimum_is_not_a_ts():
    calc = MullerBrownCalculator()
    res = optimize_ts(muller_brown_atoms(*MINIMA["B"]), calc, TSOptSettings(molecule=False, max_steps=3))
    assert not res.success


def test_irc_from_the_saddle_reaches_both_minima():
    calc = MullerBrownCalculator()
    ts = muller_brown_atoms(*SADDLES["S1"])
    irc = run_irc(ts, calc, IRCSettings(dx=0.05, max_steps=200, opt_fmax=1e-3))
    assert irc.success, irc.record()
    ends = sorted([tuple(irc.end_forward.positions[0, :2]), tuple(irc.end_reverse.positions[0, :2])])
    expect = sorted([MINIMA["A"], MINIMA["C"]])
    np.testing.assert_allclose(ends, expect, atol=5e-3)
    # energy falls monotonically along each branch away from the TS
    for branch in (irc.forward, irc.reverse):
        e = [a.info["energy"] for a in branch]
        assert np.all(np.diff(e) < 1e-6)


# --- the same surface as a horm Potential: HormCalculator's model path --------------------
@dataclass
class _NoConfig:
    pass


def _mb_potential():
    from horm.models.base import Potential

    class MullerBrownPotential(Potential):
        """Müller–Brown in x, y of every atom plus ½·100·z² (autograd forces and Hessian)."""

        forces_mode = "autograd"

        def _predict(self, batch, pos):
            A = torch.tensor([-200.0, -100.0, -170.0, 15.0], dtype=pos.dtype)
            a = torch.tensor([-1.0, -1.0, -6.5, 0.7], dtype=pos.dtype)
            b = torch.tensor([0.0, 0.0, 11.0, 0.6], dtype=pos.dtype)
            c = torch.tensor([-10.0, -10.0, -6.5, 0.7], dtype=pos.dtype)
            x0 = torch.tensor([1.0, 0.0, -0.5, -1.0], dtype=pos.dtype)
            y0 = torch.tensor([0.0, 0.5, 1.5, 1.0], dtype=pos.dtype)
            dx, dy = pos[:, :1] - x0, pos[:, 1:2] - y0
            e_atom = (A * torch.exp(a * dx**2 + b * dx * dy + c * dy**2)).sum(1) + 50.0 * pos[:, 2] ** 2
            out = torch.zeros(batch.num_graphs, dtype=pos.dtype).index_add(0, batch.batch, e_atom)
            return {"energy": out}

    return MullerBrownPotential(_NoConfig()).double()


def test_horm_calculator_over_a_potential_gives_the_analytic_hessian_and_finds_the_saddle():
    from horm.calculators.potential import HormCalculator

    calc = HormCalculator(_mb_potential(), name="mb-potential")
    ref = MullerBrownCalculator()
    at = muller_brown_atoms(-0.7, 0.8)
    np.testing.assert_allclose(calc.get_hessian(at), ref.get_hessian(at), rtol=1e-8, atol=1e-8)
    at.calc = calc
    np.testing.assert_allclose(at.get_forces(), ref.evaluate(at, False)["forces"], rtol=1e-10)
    ts = optimize_ts(at, calc, TOY)
    assert ts.success and ts.n_imaginary == 1
    np.testing.assert_allclose(ts.atoms.positions[0, :2], SADDLES["S1"], atol=2e-3)
