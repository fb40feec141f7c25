"""Committee scores and the choice of geometries to label (pure functions on arrays)."""

from __future__ import annotations

import numpy as np
import pytest

from horm.errors import UsageError
from horm.learn.scoring import committee_score, eigen_spread, force_spread, hessian_spread, lowest_modes
from horm.learn.selection import GeometryIndex, select, store_index
from horm.ts.verify import aligned_rmsd, aligned_rmsd_many


def _water_like(rng):
    pos = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0], [0.3, 0.4, 0.9]])
    a = rng.normal(size=(12, 12))
    h = a @ a.T / 12 + 0.5 * np.eye(12)  # positive definite: a minimum
    return pos, h


def test_an_identical_committee_scores_zero_and_disagreement_scores_more():
    rng = np.random.default_rng(0)
    pos, h = _water_like(rng)
    f = rng.normal(size=(4, 3))
    assert force_spread([f, f, f]) == pytest.approx(0.0, abs=1e-12)
    assert hessian_spread([h, h]) == pytest.approx(0.0, abs=1e-12)
    assert eigen_spread([h, h, h], pos)["score"] == pytest.approx(0.0, abs=1e-12)
    g = f.copy()
    g[2] += [0.3, 0.0, 0.4]  # one atom's force differs by 0.5 eV/Å in one member of two
    assert force_spread([f, g]) == pytest.approx(0.25)  # RMS deviation from the mean: 0.5 / 2
    assert hessian_spread([h, h + 0.2]) == pytest.approx(0.1)


def test_softening_the_lowest_mode_raises_the_eigen_score_more_than_a_stiff_mode():
    rng = np.random.default_rng(1)
    pos, h = _water_like(rng)
    lam, v = lowest_modes(h, pos, k=6)
    low, high = v[:, 0], v[:, -1]
    soft = h - 0.6 * np.outer(low, low)  # the lowest mode 0.6 eV/Å² softer (a TS search would feel it)
    stiff = h + 0.6 * np.outer(high, high)  # the same change along a stiff mode
    s_soft = eigen_spread([h, soft], pos)
    s_stiff = eigen_spread([h, stiff], pos)
    assert s_soft["eigval_spread"] == pytest.approx(0.3, rel=1e-6)  # std of {λ, λ - 0.6}
    assert s_stiff["score"] == pytest.approx(0.0, abs=1e-9)  # the lowest pair is untouched
    assert s_soft["score"] > 0.29
    # the same Frobenius change seen by the plain Hessian spread does not tell them apart
    assert hessian_spread([h, soft]) == pytest.approx(hessian_spread([h, stiff]))


def test_a_rotated_lowest_eigenvector_counts_as_disagreement():
    rng = np.random.default_rng(2)
    pos, h = _water_like(rng)
    lam, v = lowest_modes(h, pos, k=2)
    # swap the two lowest modes' eigenvalues: same spectrum bottom, the lowest vector turns by 90°
    swapped = h + (lam[1] - lam[0]) * (np.outer(v[:, 0], v[:, 0]) - np.outer(v[:, 1], v[:, 1]))
    s = eigen_spread([h, swapped], pos)
    assert s["eigval_spread"] == pytest.approx(0.0, abs=1e-9)
    assert s["eigvec_disagreement"] == pytest.approx(1.0, abs=1e-6)
    assert committee_score("eigen", None, [h, swapped], pos, vec_weight=2.0) == pytest.approx(2.0, abs=1e-6)
    with pytest.raises(UsageError):
        committee_score("spread", None, [h, h], pos)
    with pytest.raises(UsageError):
        force_spread([np.zeros((2, 3))])  # one member is not a committee


def test_aligned_rmsd_ignores_rotation_and_translation():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(6, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    moved = a @ q.T + [1.0, -2.0, 0.5]
    noisy = a + 0.1 * rng.normal(size=a.shape)
    r = aligned_rmsd_many(a, np.stack([moved, noisy, a[::-1]]))
    assert r[0] == pytest.approx(0.0, abs=1e-9)
    assert 0.05 < r[1] < 0.2 and r[2] > 0.5
    # an independent superposition: ASE's quaternion method
    from ase import Atoms
    from ase.build import minimize_rotation_and_translation

    ref, mob = Atoms("H6", positions=a), Atoms("H6", positions=noisy)
    minimize_rotation_and_translation(ref, mob)
    assert r[1] == pytest.approx(np.sqrt(np.mean(np.sum((mob.positions - a) ** 2, axis=1))), rel=1e-8)
    assert aligned_rmsd(a, noisy) == pytest.approx(r[1])  # the TS verifier's one-pair form


def _pool(rng, n_groups=4, copies=3, jitter=0.01):
    numbers, pos = [], []
    base = [rng.normal(size=(5, 3)) * 1.5 for _ in range(n_groups)]
    for g in range(n_groups):
        for _ in range(copies):
            numbers.append(np.array([6, 1, 1, 8, 1]))
            pos.append(base[g] + jitter * rng.normal(size=(5, 3)))
    return numbers, pos


@pytest.mark.parametrize("strategy", ["committee", "random", "window"])
def test_picks_are_diverse_within_budget_and_never_already_stored(strategy):
    rng = np.random.default_rng(4)
    numbers, pos = _pool(rng)  # 4 distinct geometries, each visited 3 times (near-duplicates)
    scores = rng.random(len(pos))
    stored = store_index([type("S", (), {"numbers": numbers[0], "pos": pos[0] + 0.001})()])  # group 0 is stored
    trust = (0.0, 1.0) if strategy == "window" else None
    picks = select(strategy, scores, numbers, pos, budget=10, min_rmsd=0.1, exclude=stored, seed=1, trust=trust)
    assert len(picks) == 3  # one per unstored group: budget not reached, no near-duplicates taken
    assert {i // 3 for i in picks} == {1, 2, 3}
    for a in picks:
        assert stored.nearest(numbers[a], pos[a]) >= 0.1
        for b in picks:
            if a != b:
                assert aligned_rmsd_many(pos[a], pos[b][None])[0] >= 0.1
    assert len(select(strategy, scores, numbers, pos, budget=2, min_rmsd=0.1, exclude=stored, seed=1,
                      trust=trust)) == 2


def test_window_draws_inside_the_trust_range_then_the_highest_below_and_never_above():
    rng = np.random.default_rng(6)
    numbers, pos = _pool(rng, n_groups=8, copies=1)
    scores = np.array([0.1, 9.0, 0.5, 2.0, 0.3, 3.0, 7.5, 1.5])  # window [1, 5]: indices 3, 5, 7; above: 1, 6
    picks = select("window", scores, numbers, pos, budget=3, min_rmsd=0.1, seed=0, trust=(1.0, 5.0))
    assert sorted(picks) == [3, 5, 7]
    orders = {tuple(select("window", scores, numbers, pos, budget=3, min_rmsd=0.1, seed=s, trust=(1.0, 5.0)))
              for s in range(6)}
    assert len(orders) > 1  # a seeded random order inside the window, not by score
    more = select("window", scores, numbers, pos, budget=6, min_rmsd=0.1, seed=0, trust=(1.0, 5.0))
    assert sorted(more[:3]) == [3, 5, 7] and more[3:] == [2, 4, 0]  # then below the window, highest first
    assert 1 not in more and 6 not in more  # above trust_hi: never, even with budget left
    with pytest.raises(UsageError, match="needs a trust window"):
        select("window", scores, numbers, pos, budget=3, min_rmsd=0.1)


def test_committee_takes_the_highest_scores_and_random_follows_its_seed():
    rng = np.random.default_rng(5)
    numbers, pos = _pool(rng, n_groups=6, copies=1)
    scores = np.array([0.1, 0.9, 0.3, 0.8, 0.2, 0.5])
    assert select("committee", scores, numbers, pos, budget=3, min_rmsd=0.1) == [1, 3, 5]
    r1 = select("random", None, numbers, pos, budget=3, min_rmsd=0.1, seed=7)
    assert r1 == select("random", None, numbers, pos, budget=3, min_rmsd=0.1, seed=7)
    assert any(select("random", None, numbers, pos, budget=3, min_rmsd=0.1, seed=s) != r1 for s in range(8, 12))
    other = [np.array([6, 1, 1, 1, 8])] + numbers[1:]  # another atom order is never a duplicate
    idx = GeometryIndex()
    idx.add(numbers[0], pos[0])
    assert idx.near(numbers[0], pos[0], 0.1) and not idx.near(other[0], pos[0], 0.1)


def test_the_pool_cap_is_a_seeded_subset_in_pool_order():
    from horm.data.sample import Sample
    from horm.learn.pool import subsample

    pool = [Sample(numbers=np.array([1, 1]), pos=np.array([[0.0, 0, 0], [0, 0, 0.7 + 0.01 * i]]), key=str(i))
            for i in range(50)]
    a, b = subsample(pool, 10, seed=3), subsample(pool, 10, seed=3)
    keys = [int(s.key) for s in a]
    assert keys == [int(s.key) for s in b] and len(keys) == 10 and keys == sorted(keys)
    assert keys != [int(s.key) for s in subsample(pool, 10, seed=4)]
    assert subsample(pool, None, 0) == pool and subsample(pool, 60, 0) == pool


def test_the_visited_pool_is_every_searched_frame_but_the_reaction_ends(tmp_path):
    import json

    from horm.data.sample import Sample
    from horm.data.xyz import write_extxyz
    from horm.learn.pool import collect_visited

    def frames(n, shift):
        return [Sample(numbers=np.array([8, 1]), pos=np.array([[0.0, 0, 0], [0, 0, 0.9 + shift + 0.05 * i]]))
                for i in range(n)]

    rdir = tmp_path / "m0" / "rxn7"
    rdir.mkdir(parents=True)
    write_extxyz(rdir / "path.xyz", frames(5, 0.0))  # reactant, 3 images, product
    write_extxyz(rdir / "ts_iterates.xyz", frames(3, 0.3))
    write_extxyz(rdir / "irc.xyz", frames(4, 0.6))
    (rdir / "record.json").write_text(json.dumps({"charge": -1, "multiplicity": 2}))
    pool = collect_visited([tmp_path / "m0"], "r03")
    assert [p.origin for p in pool] == ["m0:path:1", "m0:path:2", "m0:path:3", "m0:ts_iterates:0",
                                        "m0:ts_iterates:1", "m0:ts_iterates:2"] + [f"m0:irc:{i}" for i in range(4)]
    assert pool[0].key == "r03:rxn7:m0:path:1" and all(p.rxn == "rxn7" for p in pool)
    assert all((p.charge, p.multiplicity) == (-1, 2) for p in pool)  # as the search ran: labelled the same way
    assert pool[0].pos[1, 2] == pytest.approx(0.95)


def test_a_pick_of_an_earlier_round_is_never_picked_again_even_when_its_label_failed(tmp_path):
    """Round 1 picked geometry A and its label failed (A is not in the store); A is visited
    again in round 2: the baseline's random walk must spend its budget elsewhere."""
    from horm.data.sample import Sample
    from horm.data.xyz import read_xyz, write_extxyz
    from horm.learn import LearnSettings
    from horm.learn.loop import _stage_select
    from horm.learn.state import round_dir

    def mol(z):
        return Sample(numbers=np.array([8, 1, 1]), pos=np.array([[0.0, 0, 0], [0.96 + z, 0, 0], [-0.2, 0.9, 0]]))

    out = tmp_path / "out"
    (tmp_path / "rx").mkdir()
    for m in ("a.pt", "b.pt"):
        (tmp_path / m).write_bytes(b"")
    s = LearnSettings(reactions=str(tmp_path / "rx"), models=(str(tmp_path / "a.pt"), str(tmp_path / "b.pt")),
                      out=str(out), strategy="random", budget=3, min_rmsd=0.05)
    failed = mol(0.0)
    round_dir(out, 1).mkdir(parents=True)
    write_extxyz(round_dir(out, 1) / "picks.xyz", [failed])
    rdir = round_dir(out, 2) / "search" / "m0" / "rxn1"
    rdir.mkdir(parents=True)
    visited = [mol(0.3 * k) for k in range(4)]  # frame 0 is the failed pick; aligned RMSDs ≥ 0.13 Å apart
    write_extxyz(rdir / "ts_iterates.xyz", visited)
    for seed in range(5):
        state = {"round": 2, "stage": "select", "timings": {}}
        s.seed = seed
        _stage_select(s, out, state)
        picked = read_xyz(round_dir(out, 2) / "picks.xyz")
        assert state["n_picks"] == 3 == len(picked)
        assert min(aligned_rmsd(p.pos, failed.pos) for p in picked) > 0.1
