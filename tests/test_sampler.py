"""Size-bucketed batching: budgets hold, every sample once per epoch, seeded order, disjoint DDP
shares, and a resumed epoch continues with the same next batch."""

from __future__ import annotations

import numpy as np
import pytest

from horm.data.sampler import BudgetBatchSampler
from horm.errors import UsageError

RNG = np.random.default_rng(7)
NATOMS = RNG.integers(4, 24, size=3000)  # T1x-like spread: 4-23 atoms


def _flat(batches) -> list[int]:
    return [i for b in batches for i in b]


@pytest.mark.parametrize("budget", [{"max_atoms": 200}, {"max_hessian": 40_000}, {"max_atoms": 150, "max_hessian": 60_000}])
def test_no_batch_exceeds_its_budget_and_each_sample_is_seen_once(budget):
    s = BudgetBatchSampler(NATOMS, batch_size=64, shuffle=True, seed=1, **budget)
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = list(s)
        assert sorted(_flat(batches)) == list(range(len(NATOMS)))  # once per epoch
        for b in batches:
            n = NATOMS[b]
            assert len(b) <= 64
            assert n.sum() <= budget.get("max_atoms", np.inf)
            assert (9 * n.astype(np.int64) ** 2).sum() <= budget.get("max_hessian", np.inf)
        assert len(batches) == len(s)
    # the budget is used: batches of small molecules hold more of them than batches of large ones
    sizes = [(NATOMS[b].mean(), len(b)) for b in batches]
    small = np.mean([k for m, k in sizes if m < 8])
    large = np.mean([k for m, k in sizes if m > 18])
    assert small > 1.8 * large


def test_epoch_order_is_seeded_and_changes_between_epochs():
    def order(seed, epoch):
        s = BudgetBatchSampler(NATOMS, batch_size=16, max_atoms=200, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert order(3, 0) == order(3, 0)
    assert order(3, 0) != order(3, 1) and order(3, 0) != order(4, 0)
    count_only = BudgetBatchSampler(NATOMS, batch_size=16, seed=3)
    assert [len(b) for b in count_only][:-1] == [16] * (len(count_only) - 1)


def test_without_shuffle_the_samples_come_in_order():
    s = BudgetBatchSampler(NATOMS[:100], batch_size=8, max_atoms=80, shuffle=False)
    assert _flat(list(s)) == list(range(100))


@pytest.mark.parametrize("world", [2, 3])
def test_ddp_shares_are_disjoint_equal_and_cover_the_epoch(world):
    shares = []
    for rank in range(world):
        s = BudgetBatchSampler(NATOMS, batch_size=32, max_atoms=300, seed=5)
        s.shard(world, rank)
        s.set_epoch(2)
        shares.append(list(s))
    assert len({len(x) for x in shares}) == 1  # every rank runs the same number of steps
    single = BudgetBatchSampler(NATOMS, batch_size=32, max_atoms=300, seed=5)
    single.set_epoch(2)
    n_batches = len(single)
    pad = -n_batches % world
    seen = [i for x in shares for i in _flat(x)]
    assert sorted(set(seen)) == list(range(len(NATOMS)))  # the epoch is covered
    duplicates = len(seen) - len(set(seen))
    assert duplicates == sum(len(b) for b in list(single)[:pad])  # only the padding batches repeat
    if pad == 0:
        assert duplicates == 0


def test_resume_continues_with_the_same_next_batch():
    full = BudgetBatchSampler(NATOMS, batch_size=32, max_atoms=250, seed=9)
    full.shard(2, 1)
    full.set_epoch(1)
    want = list(full)
    again = BudgetBatchSampler(NATOMS, batch_size=32, max_atoms=250, seed=9)
    again.shard(2, 1)
    again.resume(1, 7)
    assert list(again) == want[7:]
    assert list(again)[0] != want[7]  # the next iteration is the next epoch
    ended = BudgetBatchSampler(NATOMS, batch_size=32, max_atoms=250, seed=9)
    ended.resume(0, len(ended))  # saved at the end of epoch 0: epoch 1 next
    nxt = BudgetBatchSampler(NATOMS, batch_size=32, max_atoms=250, seed=9)
    nxt.set_epoch(1)
    assert list(ended) == list(nxt)


def test_weighted_draws_keep_the_batch_count_of_epoch_zero():
    w = np.where(NATOMS > 20, 10.0, 1.0)
    s = BudgetBatchSampler(NATOMS, batch_size=64, max_atoms=300, seed=2, weights=w)
    n0 = len(s)
    for epoch in range(1, 4):
        s.set_epoch(epoch)
        assert len(list(s)) == n0
    drawn = NATOMS[_flat(list(s))]
    assert (drawn > 20).mean() > 0.5  # 10x weight on 3/19 of the sizes


def test_a_molecule_larger_than_the_budget_is_one_usage_line():
    with pytest.raises(UsageError, match=r"batch_max_atoms=10 is below the largest molecule .*23 atoms.*\[23, inf\)"):
        BudgetBatchSampler(NATOMS, batch_size=8, max_atoms=10)
    with pytest.raises(UsageError, match=r"batch_max_hessian=100 .*\(3·23\)² = 4761"):
        BudgetBatchSampler(NATOMS, batch_size=8, max_hessian=100)
