"""Batches by budget, sharded across DDP ranks, seeded per epoch and resumable mid-epoch.

A batch holds at most ``batch_size`` molecules and, when set, at most ``max_atoms`` atoms and at
most ``max_hessian`` Hessian entries, Σ (3n)² (the memory of an E-F-H step grows with both: a
batch of 21-atom molecules needs 7× the Hessian memory of one of 8-atom ones). The budgets are
checked against each sample's atom count from :func:`horm.data.index.atom_counts`, so no sample
is read to plan an epoch.

**Epoch order** (``shuffle``), from ``seed`` and the epoch number only:
- count budget only: a permutation of the samples, cut into batches of ``batch_size``;
- an atom or Hessian budget: the samples sorted by atom count, ties in random order, packed
  greedily, then the batches shuffled. Molecules of one batch are of similar size, so batches
  fill their budget, and the batches are the same number every epoch (the sorted sizes are).
- ``weights``: ``len`` draws with replacement, with probability ∝ weight, packed the same way;
  the number of batches is that of epoch 0, kept by dropping or repeating random batches.
Without ``shuffle`` the samples are packed in order (validation).

**DDP** (:meth:`shard`): every rank plans the same global list of batches, padded to a multiple
of the world size by repeating its first batches, and takes batches ``rank::world``: shares are
disjoint except for that padding, and every rank runs the same number of steps.

**Resume** (:meth:`resume`): the epoch and the batches already consumed in it; the next
iteration skips those batches of this rank's share, so a resumed run continues the same order.

**Epochs are the sampler's own**: each complete iteration advances ``epoch``; nothing is taken
from the trainer's epoch counter (Lightning counts a run stopped at ``max_steps`` mid-epoch as
a finished epoch, so its number and the data's place part after such a stop).
"""

from __future__ import annotations

import numpy as np
import torch

from horm.errors import UsageError


class BudgetBatchSampler(torch.utils.data.Sampler):
    """Lists of dataset positions; see the module docstring."""

    def __init__(self, natoms, *, batch_size: int, max_atoms: int | None = None, max_hessian: int | None = None,
                 shuffle: bool = True, seed: int = 0, weights=None, source: str = "data"):
        self.natoms = np.asarray(natoms, dtype=np.int64)
        self.batch_size, self.max_atoms, self.max_hessian = int(batch_size), max_atoms, max_hessian
        self.shuffle, self.seed = shuffle, int(seed)
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        self.world, self.rank = 1, 0
        self.epoch, self._skip = 0, 0
        self.current = 0  # the epoch the latest iteration is in (what a checkpoint records)
        self._plans: dict[int, list[np.ndarray]] = {}
        if len(self.natoms) == 0:
            raise UsageError(f"{source}: no samples to batch")
        big = int(self.natoms.max())
        if max_atoms is not None and big > max_atoms:
            raise UsageError(f"trainer.batch_max_atoms={max_atoms} is below the largest molecule of {source} "
                             f"({big} atoms); valid here: [{big}, inf)")
        if max_hessian is not None and (3 * big) ** 2 > max_hessian:
            raise UsageError(f"trainer.batch_max_hessian={max_hessian} is below the Hessian of the largest molecule "
                             f"of {source} ((3·{big})² = {(3 * big) ** 2} entries); valid here: [{(3 * big) ** 2}, inf)")

    @property
    def budgeted(self) -> bool:
        return self.max_atoms is not None or self.max_hessian is not None

    # planning ----------------------------------------------------------------------------------
    def _pack(self, order: np.ndarray) -> list[np.ndarray]:
        if not self.budgeted:
            return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        atoms = self.natoms[order]
        cap_a = self.max_atoms if self.max_atoms is not None else np.iinfo(np.int64).max
        cap_h = self.max_hessian if self.max_hessian is not None else np.iinfo(np.int64).max
        cuts, count, a, h, bs = [0], 0, 0, 0, self.batch_size
        for k, n in enumerate(atoms.tolist()):
            hn = 9 * n * n
            if count and (count == bs or a + n > cap_a or h + hn > cap_h):
                cuts.append(k)
                count, a, h = 0, 0, 0
            count, a, h = count + 1, a + n, h + hn
        cuts.append(len(order))
        return [order[lo:hi] for lo, hi in zip(cuts[:-1], cuts[1:])]

    def _order(self, rng: np.random.Generator) -> np.ndarray:
        n = len(self.natoms)
        if self.weights is not None:
            order = rng.choice(n, n, replace=True, p=self.weights / self.weights.sum())
        else:
            order = rng.permutation(n)
        if self.budgeted:
            order = order[np.argsort(self.natoms[order], kind="stable")]
        return order

    def _global(self, epoch: int) -> list[np.ndarray]:
        if not self.shuffle:
            batches = self._pack(np.arange(len(self.natoms)))
        else:
            rng = np.random.default_rng([self.seed, epoch])
            batches = self._pack(self._order(rng))
            if self.budgeted:
                batches = [batches[i] for i in rng.permutation(len(batches))]
            if self.weights is not None and epoch != 0:
                batches = self._fixed_count(batches, len(self._global(0)), rng)
        pad = -len(batches) % self.world
        return batches + batches[:pad]

    @staticmethod
    def _fixed_count(batches: list[np.ndarray], want: int, rng) -> list[np.ndarray]:
        if len(batches) >= want:
            return batches[:want]
        extra = rng.choice(len(batches), want - len(batches), replace=True)
        return batches + [batches[i] for i in extra]

    def plan(self, epoch: int) -> list[np.ndarray]:
        """This rank's batches of ``epoch`` (cached for the two most recent epochs)."""
        if epoch not in self._plans:
            self._plans = {e: p for e, p in self._plans.items() if e >= epoch - 1}
            self._plans[epoch] = self._global(epoch)[self.rank::self.world]
        return self._plans[epoch]

    # the Sampler protocol ------------------------------------------------------------------------
    def shard(self, world: int, rank: int) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside a world of {world}")
        if (world, rank) != (self.world, self.rank):
            self.world, self.rank, self._plans = int(world), int(rank), {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def resume(self, epoch: int, consumed: int) -> int:
        """Continue ``epoch`` after its first ``consumed`` batches of this rank; returns the batches
        the next iteration skips (0 when ``epoch`` was complete: the next one starts)."""
        if consumed >= len(self.plan(epoch)):
            epoch, consumed = epoch + 1, 0
        self.epoch, self._skip = int(epoch), int(consumed)
        return self._skip

    def __len__(self) -> int:
        return len(self.plan(self.epoch))

    def __iter__(self):
        epoch, skip = self.epoch, self._skip
        self._skip, self.current = 0, epoch
        for b in self.plan(epoch)[skip:]:
            yield b.tolist()
        self.epoch = epoch + 1
