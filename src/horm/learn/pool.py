"""The visited pool: geometries the committee's TS searches pass through.

Each round runs the TS workflow (path → TS optimisation → IRC, :mod:`horm.ts.benchmark`
on the job runner: worker processes, or Ray by address) over the round's training
reactions with the first ``search_models`` committee models, each into its own folder
``<round>/search/m<i>/``. Every finished reaction leaves its trajectory files there
(:mod:`horm.ts.workflow`): ``path.xyz`` (the relaxed band), ``ts_iterates.xyz`` (every
Sella step) and ``irc.xyz`` (both branches and their relaxed ends). Their frames are the
pool; each gets ``rxn``, ``origin`` (``m<i>:<file stem>:<frame>``) and a key
``<round tag>:<rxn>:<origin>``. Reactant and product frames (the path's two ends) are left
out: they are the inputs, not places the search went. :func:`subsample` caps the pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from horm.data.sample import Sample
from horm.errors import DataError

TRAJECTORIES = ("path.xyz", "ts_iterates.xyz", "irc.xyz")


def select_pool_reactions(reactions_dir, n: int | None, seed: int, exclude: Sequence[str] = ()) -> list[Path]:
    """The round's training reactions: the ``*.xyz`` of ``reactions_dir`` not named in
    ``exclude`` (held-out stems), a seeded subset of ``n`` of them when ``n`` is given."""
    from horm.ts.benchmark import select_reactions

    files = [f for f in select_reactions(reactions_dir) if f.stem not in set(exclude)]
    if n is None or n >= len(files):
        return files
    idx = np.random.default_rng(seed).choice(len(files), size=n, replace=False)
    return [files[i] for i in sorted(idx)]


def run_searches(reactions: Sequence[Path], models: Sequence[str], out_dir, settings, jobs: dict) -> list[Path]:
    """TS searches over ``reactions`` with each of ``models`` into ``out_dir/m<i>``; resumable.

    ``settings``: a :class:`horm.ts.workflow.RunSettings`; ``jobs``: keyword arguments of
    :func:`horm.ts.benchmark.run_benchmark` (workers, timeout, ray, charge, multiplicity).
    Returns the search folders.
    """
    from horm.ts.benchmark import run_benchmark

    dirs = []
    for i, model in enumerate(models):
        d = Path(out_dir) / f"m{i}"
        run_benchmark(list(reactions), str(Path(model).resolve()), d, settings=settings, **jobs)
        dirs.append(d)
    return dirs


def _frames(path: Path) -> list[Sample]:
    from horm.data.xyz import read_xyz

    try:
        return read_xyz(path)
    except DataError:  # a frame too close to collapse (a wild TS step) is no training data
        return []


def _spin(rdir: Path) -> tuple[int, int]:
    """(charge, multiplicity) the reaction's TS search ran with (its ``record.json``; else 0, 1)."""
    import json

    try:
        rec = json.loads((rdir / "record.json").read_text())
        return int(rec.get("charge", 0)), int(rec.get("multiplicity", 1))
    except (OSError, ValueError, TypeError):
        return 0, 1


def collect_visited(search_dirs: Sequence[Path], tag: str) -> list[Sample]:
    """Every frame of the trajectory files under ``search_dirs`` (see the module docstring), with
    the charge and multiplicity its reaction's search ran with."""
    out: list[Sample] = []
    for i, d in enumerate(search_dirs):
        for rdir in sorted(p for p in Path(d).iterdir() if p.is_dir()):
            charge, mult = _spin(rdir)
            for name in TRAJECTORIES:
                f = rdir / name
                if not f.is_file():
                    continue
                frames = _frames(f)
                if name == "path.xyz":
                    frames = list(enumerate(frames))[1:-1]
                else:
                    frames = list(enumerate(frames))
                for j, s in frames:
                    origin = f"m{i}:{f.stem}:{j}"
                    out.append(Sample(numbers=np.asarray(s.numbers, dtype=np.int64), pos=np.array(s.pos),
                                      charge=charge, multiplicity=mult, rxn=rdir.name, origin=origin,
                                      key=f"{tag}:{rdir.name}:{origin}"))
    return out


def subsample(pool: list[Sample], n: int | None, seed: int) -> list[Sample]:
    """At most ``n`` of ``pool`` (a seeded subset, in pool order): what both strategies choose from
    (an IRC of 200 points costs 200 committee Hessians to score, most of them near-duplicates)."""
    if n is None or len(pool) <= n:
        return pool
    idx = np.random.default_rng(seed).choice(len(pool), size=n, replace=False)
    return [pool[i] for i in sorted(idx)]
