"""xTB labelling throughput with 1 and 2 workers, local process pool and Ray, in one run.

    python benchmarks/label_scaling.py [--n 40] [--reactions ../shared/data/t1x_val_reactions]

Geometries: reactants and products of the first T1x validation reactions with 8–11
atoms (or ASE's small molecules when ../shared is absent), repeated with small seeded
displacements up to ``--n``. For each mode the same geometries are labelled into a fresh
store. Printed per mode: samples/s, speed-up over the 1-worker run of the same backend
and over the in-process run, start-up time, and per sample: the engine's own wall and CPU
time (as measured inside the worker; wall above CPU means the worker waited for a core
that something else held, which on a shared machine, not the runner, bounds the ratio)
and the framework overhead, i.e. wall time × workers / n minus the engine time (queueing,
pickling, LMDB commits, idle workers); then Ray's own cost per task: its 1-worker overhead
per sample minus the in-process one (Ray sends batches of keys per call, see
``horm.jobs.ray_backend``). Goals: ≥ 1.8× with 2 local worker processes over the
in-process run, ≥ 1.7× from 1 to 2 Ray workers.

Last, the runner's own ceiling: the same number of tasks that each sleep for the
in-process engine time (no CPU used, so busy cores elsewhere do not matter), 1 and 2
workers, worker processes and Ray.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
T1X = REPO.parent / "shared" / "data" / "t1x_val_reactions"


def geometries(n: int, reactions: Path, seed: int = 0):
    from horm.data.sample import Sample

    base: list[Sample] = []
    if reactions.is_dir():
        from horm.data.xyz import read_reaction

        for f in sorted(reactions.glob("rxn*.xyz")):
            r, p = read_reaction(f)
            if 8 <= r.natoms <= 11:
                base += [r, p]
            if len(base) >= 10:
                break
    else:
        from ase.build import molecule

        for name in ("CH3CH2OH", "CH3COCH3", "C2H6", "CH3CHO", "C3H8"):
            a = molecule(name)
            base.append(Sample(numbers=a.numbers.astype(np.int64), pos=a.positions.copy()))
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        b = base[i % len(base)]
        out.append(Sample(numbers=b.numbers, pos=b.pos + rng.normal(0, 0.02, b.pos.shape), key=f"g{i}"))
    return out


def _no_object():
    return None


def _sleep(_, seconds: float) -> float:
    time.sleep(seconds)
    return seconds


class _Discard:
    def skip_reason(self, key):
        return None

    def put(self, outcomes):
        pass


def runner_ceiling(n: int, seconds: float, ray: bool) -> None:
    """Tasks that sleep ``seconds``: 1 → 2 workers with nothing but the runner in the way."""
    import label_scaling as me  # by module name, so that worker processes can import the task

    from horm.jobs import Job, JobOptions, run_jobs

    print(f"runner ceiling: {n} tasks sleeping {seconds:.3f} s each (no CPU)")
    for backend in ("process", "ray") if ray else ("process",):
        rates = []
        for w in (1, 2):
            opts = JobOptions(workers=w, ray="local" if backend == "ray" else None, isolate=True, progress=False)
            st = run_jobs(((f"s{i}", seconds) for i in range(n)), Job(me._no_object, me._sleep), _Discard(), opts,
                          total=n)
            rates.append(n / st.seconds)
        print(f"  {backend:<8} 1 worker {rates[0]:.2f} tasks/s, 2 workers {rates[1]:.2f} tasks/s: "
              f"{rates[1] / rates[0]:.2f}x (ideal 2.00x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--reactions", type=Path, default=T1X)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the best rate of each mode is kept")
    a = ap.parse_args()

    from horm.data.xyz import write_xyz
    from horm.label import get_engine
    from horm.label.runner import label

    engine = get_engine("xtb")
    geos = geometries(a.n, a.reactions)
    tmp = Path(tempfile.mkdtemp(prefix="horm-label-scaling-"))
    src = write_xyz(tmp / "geoms.xyz", geos)
    natoms = [g.natoms for g in geos]
    print(f"{a.n} geometries, {min(natoms)}-{max(natoms)} atoms, engine {engine.level_of_theory}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    t = time.perf_counter()
    for g in geos[:5]:
        engine.compute(g)
    print(f"engine alone (in this process): {(time.perf_counter() - t) / 5:.3f} s/sample on the first 5")

    modes = [("in-process", 1, None), ("process pool", 2, None)]
    ray_start = 0.0
    if not a.no_ray:
        import ray as _ray

        t = time.perf_counter()  # one local Ray for both Ray modes (the runner reuses it)
        _ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                  runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}})
        ray_start = time.perf_counter() - t
        modes += [("ray", 1, "local"), ("ray", 2, "local")]
    best: dict = {}
    for rep in range(a.repeat):  # rounds over all modes, so that a load change hits every mode alike
        for name, workers, ray in modes:
            out = tmp / f"{name.replace(' ', '_')}_{workers}_{rep}.hstore"
            s = label(src, engine, out, workers=workers, ray_address=ray, show_progress=False, print_summary=False)
            assert s.labelled == a.n, s.line()
            eng = s.engine_seconds / s.computed
            over = s.seconds * workers / s.computed - eng
            row = (name, workers, s.rate, s.startup_seconds + (ray_start if ray else 0.0), eng, over,
                   s.engine_cpu_seconds / s.computed)
            if (name, workers) not in best or row[2] > best[(name, workers)][2]:
                best[(name, workers)] = row
    rows = list(best.values())
    print(f"best of {a.repeat} rounds; Ray start-up ({ray_start:.1f} s) counted in both Ray rows")
    base = {}
    print(f"{'backend':<14}{'workers':>8}{'samples/s':>11}{'x same':>8}{'x 1-proc':>10}{'start s':>9}"
          f"{'engine s/sample':>17}{'engine CPU s':>14}{'overhead s/sample':>19}")
    for name, w, rate, start, eng, over, cpu in rows:
        base.setdefault(name if name != "process pool" else "in-process", rate)
        same = rate / base[name if name != "process pool" else "in-process"]
        print(f"{name:<14}{w:>8}{rate:>11.2f}{same:>8.2f}{rate / rows[0][2]:>10.2f}{start:>9.1f}"
              f"{eng:>17.3f}{cpu:>14.3f}{over:>19.4f}")
    by = {(r[0], r[1]): r for r in rows}
    if ("ray", 1) in by:
        per = by[("ray", 1)][5] - rows[0][5]
        print(f"Ray overhead per task (1 worker, batched; overhead column minus in-process): {per * 1000:+.1f} "
              f"ms/sample ({per / rows[0][4] * 100:+.1f}% of the engine time per sample)")
    print(f"goals: >= 1.80x for the 2-process pool, >= 1.70x for 2 Ray workers (column 'x same'); the machine "
          f"is shared, so the ratio is bounded by the cores actually free (load average now "
          f"{os.getloadavg()[0]:.1f}).")
    runner_ceiling(a.n, rows[0][4], not a.no_ray)


if __name__ == "__main__":
    main()
