"""Startup, loader and memory at published scale: the HORM LMDB format and the horm store side by side.

    python benchmarks/scale.py [--sizes 20000 200000] [--work /tmp/horm_scale] [--ddp-steps 50]
        [--loader-samples 3000] [--split] [--json OUT.json]

For each size N it writes (once; reused when present) a synthetic file in the published format
(``make_synthetic_horm.py``) and its horm store (``horm data convert``, timed, peak RSS), then
measures, for both formats, in one run:

- ``horm data info``: wall time of the whole command (best of 3);
- ``horm train`` to the end of its first optimiser step: from the launch of the command to the
  ``first_step_unix`` of ``run.json`` (imports, indexes, references, model, first batch), with
  horm's cache cold (a fresh ``HORM_CACHE_DIR``) and warm, with 1 process and with 2-process DDP
  (gloo, CPU); tiny LEFTNet, E-F-H loss, batch 8, no validation;
- loader samples/s with Hessians, 0, 1 and 2 workers (``make_loader`` as training builds it,
  batch 32, after the first batch);
- peak RSS (``VmHWM``) of a 20-step tiny training (file pages LMDB maps count in RSS; 20 steps
  touch few of them).

Then the anchor, on the HORM file: HORM's own way of reading (LMDB get + plain ``pickle.loads``
into PyG-style objects with real torch tensors; stand-in ``torch_geometric`` classes) against
horm's safe reader (LMDB get + allow-list decode + checks, a ``Sample``), the same 2,000 seeded
records. And, for the largest size, a ``--ddp-steps`` DDP run (2 processes, gloo) whose ranks
must end with equal weights, and the disjointness of the two ranks' shares of epoch 0.

Ratios printed: 200k / 20k for each startup figure (the target is ≤ 1.5: startup does not grow
with the file), safe reader / plain pickle (target ≤ 1.5).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
HORM = [sys.executable, "-m", "horm.cli"]
TINY = ["model.name=leftnet", "model.preset=tiny", "model.overrides.hidden_channels=16",
        "model.overrides.num_layers=1", "trainer.progress_bar=false", "trainer.batch_size=8",
        "data.val_fraction=0"]
DDP = ["trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu"]


def _env(cache: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HORM_CACHE_DIR=str(cache))
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def _status_kib(pid: int) -> dict[str, int]:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in fh)
                    if k in ("VmHWM", "RssAnon")}
    except (OSError, ValueError):
        return {}


def _watch(pid: int, peak: dict, done: threading.Event) -> None:
    while not done.wait(0.05):
        for k, v in _status_kib(pid).items():
            peak[k] = max(peak.get(k, 0), v)


LAST_ANON_MIB = [0.0]  # peak anonymous RSS of the last run() (polled every 0.05 s)


def run(cmd: list[str], cache: Path, timeout: float = 1800) -> tuple[float, float, float]:
    """Run ``cmd``; (launch time.time(), wall s, the process's peak RSS in MiB).

    The peak is the child's own ``VmHWM`` (polled every 0.05 s; it only grows), not ``wait4``'s
    ``ru_maxrss``, which on Linux also counts this parent's RSS at the fork before the exec.
    ``LAST_ANON_MIB[0]``: the peak anonymous RSS, i.e. without the file pages an mmap reader maps."""
    t0, p0 = time.time(), time.perf_counter()
    proc = subprocess.Popen(cmd, env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    timer, done, peak = threading.Timer(timeout, proc.kill), threading.Event(), {}
    watch = threading.Thread(target=_watch, args=(proc.pid, peak, done), daemon=True)
    timer.start()
    watch.start()
    try:
        out = proc.stdout.read()  # EOF: the child is exiting
        done.set()
        watch.join()
        proc.wait()
    finally:
        timer.cancel()
        done.set()
    wall = time.perf_counter() - p0
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[2:6])}... exited {proc.returncode}:\n{out.decode()[-3000:]}")
    LAST_ANON_MIB[0] = peak.get("RssAnon", 0) / 1024.0
    return t0, wall, peak.get("VmHWM", 0) / 1024.0


def prepare(n: int, work: Path) -> tuple[Path, Path, dict]:
    """The N-sample HORM file and its store (made once); the store's convert figures."""
    from make_synthetic_horm import make_synthetic

    lmdb_path, store = work / f"synth{n}.lmdb", work / f"synth{n}.hstore"
    facts_file = work / f"synth{n}.convert.json"
    if not lmdb_path.exists():
        make_synthetic(n, lmdb_path)
    if not (store.exists() and facts_file.exists()):
        if store.exists():
            subprocess.run(["rm", "-rf", str(store)], check=True)
        _, wall, rss = run(HORM + ["data", "convert", str(lmdb_path), str(store)], work / "cache-convert")
        facts_file.write_text(json.dumps({"convert_s": wall, "convert_rss_mib": rss,
                                          "convert_anon_mib": LAST_ANON_MIB[0]}))
    return lmdb_path, store, json.loads(facts_file.read_text())


def split_figures(path: Path, work: Path) -> dict:
    """``horm data split`` of the HORM file into two stores: wall, peak RSS and anonymous RSS."""
    out = work / "split"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    _, wall, rss = run(HORM + ["data", "split", str(path), "--out", str(out), "--val", "0.1"], work / "cache-split")
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return {"split_s": wall, "split_rss_mib": rss, "split_anon_mib": LAST_ANON_MIB[0]}


def info_time(path: Path, cache: Path) -> float:
    return min(run(HORM + ["data", "info", str(path)], cache)[1] for _ in range(3))


def first_step(path: Path, cache: Path, out: Path, extra: list[str] = ()) -> tuple[float, float]:
    """Seconds from launching ``horm train`` to the end of its first optimiser step; peak RSS MiB."""
    subprocess.run(["rm", "-rf", str(out)], check=True)
    t0, _, rss = run(HORM + ["train", "--data", str(path), "--out", str(out), *TINY, "trainer.max_steps=1",
                             *extra], cache)
    return json.loads((out / "run.json").read_text())["first_step_unix"] - t0, rss


def train_rss(path: Path, cache: Path, out: Path, steps: int = 20) -> float:
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return run(HORM + ["train", "--data", str(path), "--out", str(out), *TINY, f"trainer.max_steps={steps}"],
               cache)[2]


@contextlib.contextmanager
def train_data(path: Path, cache: Path):
    """The training data of ``path`` as ``horm train`` opens it (no validation split), indexes in ``cache``."""
    from horm.train.config import TrainConfig
    from horm.train.data import load_train_data

    os.environ["HORM_CACHE_DIR"] = str(cache)
    cfg = TrainConfig.from_yaml(None, [f"data.train={path}", "data.val_fraction=0"])
    with tempfile.TemporaryDirectory() as d:
        data = load_train_data(cfg.data, out=d)
        try:
            yield data
        finally:
            data.close()


def loader_rate(path: Path, cache: Path, workers: int, samples: int) -> float:
    """Samples/s of the training loader (full Hessians collated), after its first batch."""
    import torch

    from horm.train.data import make_loader

    with train_data(path, cache) as data:
        loader = make_loader(data.train, 32, torch.float32, shuffle=True, num_workers=workers, seed=0,
                             natoms=data.train_natoms)
        it = iter(loader)
        next(it)
        t, got = time.perf_counter(), 0
        while got < samples:
            b = next(it)
            assert b.hessian is not None
            got += b.num_graphs
        rate = got / (time.perf_counter() - t)
        del it, loader
    return rate


def _pyg_standins() -> None:
    """Stand-in ``torch_geometric`` classes, so plain pickle can rebuild the published records."""
    class _PyG:
        def __init__(self, *a, **k):
            pass

        def __setstate__(self, state):
            self.__dict__.update(state if isinstance(state, dict) else {"state": state})

    data, storage = types.ModuleType("torch_geometric.data.data"), types.ModuleType("torch_geometric.data.storage")
    for mod, names in ((data, ("Data", "DataEdgeAttr", "DataTensorAttr")), (storage, ("GlobalStorage", "BaseStorage"))):
        for c in names:
            setattr(mod, c, type(c, (_PyG,), {}))
    sys.modules.update({"torch_geometric": types.ModuleType("torch_geometric"),
                        "torch_geometric.data": types.ModuleType("torch_geometric.data"),
                        "torch_geometric.data.data": data, "torch_geometric.data.storage": storage})


def anchor(path: Path, k: int = 2000, repeat: int = 3) -> dict:
    """ms/record: plain pickle.loads (HORM's reader) vs horm's safe reader, same seeded records."""
    from _timing import timed
    from horm.data.horm_lmdb import HormLmdb

    _pyg_standins()
    ds = HormLmdb(path)
    keys = np.random.default_rng(0).choice(len(ds), size=min(k, len(ds)), replace=False)

    def plain():
        for i in keys:
            rec = pickle.loads(ds.raw(int(i)))  # what HORM's LmdbDataset does; unsafe on a foreign file
            rec._store.__dict__["_mapping"]["hessian"].sum()

    def safe():
        for i in keys:
            ds[int(i)].hessian.sum()

    t_plain, _ = timed(plain, repeat)
    t_safe, _ = timed(safe, repeat)
    ds.close()
    return {"plain_pickle_ms": 1e3 * t_plain / len(keys), "safe_reader_ms": 1e3 * t_safe / len(keys),
            "safe_over_plain": t_safe / t_plain}


def shares_disjoint(path: Path, cache: Path, world: int = 2) -> dict:
    """Epoch 0 of the training sampler as each DDP rank takes it (``shard`` as ``HormModule.setup``
    calls it): the shares must be disjoint apart from the padding and cover every sample."""
    import torch

    from horm.train.data import make_loader

    with train_data(path, cache) as data:
        shares = []
        for rank in range(world):
            s = make_loader(data.train, 8, torch.float32, shuffle=True, natoms=data.train_natoms).batch_sampler
            s.shard(world, rank)
            shares.append(np.concatenate(s.plan(0)))
        n = len(data.train)
    seen = np.concatenate(shares)
    overlap = len(seen) - len(np.unique(seen))
    return {"samples": n, "per_rank": [len(x) for x in shares], "repeated": int(overlap),
            "covered": bool(len(np.unique(seen)) == n), "disjoint": bool(overlap < 8 * world)}


def ddp_run(path: Path, cache: Path, out: Path, steps: int) -> dict:
    subprocess.run(["rm", "-rf", str(out)], check=True)
    _, wall, _ = run(HORM + ["train", "--data", str(path), "--out", str(out), *TINY, f"trainer.max_steps={steps}",
                             *DDP], cache)
    ranks = [json.loads((out / "ddp_sync" / f"rank{r}.json").read_text()) for r in (0, 1)]
    return {"steps": steps, "wall_s": wall, "global_step": [r["global_step"] for r in ranks],
            "weights_equal": ranks[0]["sha256"] == ranks[1]["sha256"]}


def measure(path: Path, work: Path, tag: str, loader_samples: int) -> dict:
    cold, warm = work / f"cache-cold-{tag}", work / f"cache-warm-{tag}"
    subprocess.run(["rm", "-rf", str(cold), str(warm)], check=True)
    r = {"info_s": info_time(path, warm)}
    r["first_step_cold_s"], r["first_step_rss_mib"] = first_step(path, cold, work / "run")
    first_step(path, warm, work / "run")  # fills the warm cache
    r["first_step_warm_s"], _ = first_step(path, warm, work / "run")
    r["first_step_ddp2_s"], _ = first_step(path, warm, work / "run", DDP)
    for w in (0, 1, 2):
        r[f"loader_w{w}_per_s"] = loader_rate(path, warm, w, loader_samples)
    r["train20_rss_mib"] = train_rss(path, warm, work / "run")
    return r


ROWS = [("info_s", "data info (s)"), ("first_step_cold_s", "train → step 1, cache cold (s)"),
        ("first_step_warm_s", "train → step 1, cache warm (s)"), ("first_step_ddp2_s", "train → step 1, DDP ×2 gloo (s)"),
        ("loader_w0_per_s", "loader, 0 workers (samples/s)"), ("loader_w1_per_s", "loader, 1 worker (samples/s)"),
        ("loader_w2_per_s", "loader, 2 workers (samples/s)"), ("train20_rss_mib", "20-step train peak RSS (MiB)")]


def report(results: dict, sizes: list[int]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="horm at scale: HORM LMDB format | horm store")
    table.add_column("measure")
    for n in sizes:
        table.add_column(f"{n:,} HORM", justify="right")
        table.add_column(f"{n:,} store", justify="right")
    if len(sizes) > 1:
        table.add_column(f"{sizes[-1] // 1000}k/{sizes[0] // 1000}k HORM | store", justify="right")
    for key, label in ROWS:
        cells = [f"{results[n][fmt][key]:.4g}" for n in sizes for fmt in ("horm", "store")]
        if len(sizes) > 1:
            cells.append(" | ".join(f"{results[sizes[-1]][f][key] / results[sizes[0]][f][key]:.2f}"
                                    for f in ("horm", "store")))
        table.add_row(label, *cells)
    console = Console(width=max(100, 26 + 14 * 2 * len(sizes) + 16))
    console.print(table)
    for n in sizes:
        c, a = results[n]["convert"], results[n]["anchor"]
        console.print(f"{n:,}: data convert {c['convert_s']:.1f} s, peak RSS {c['convert_rss_mib']:.0f} MiB "
                      f"(anonymous {c['convert_anon_mib']:.0f} MiB; the rest is mapped file pages); "
                      f"read one record: plain pickle.loads {a['plain_pickle_ms']:.3f} ms, horm's safe reader "
                      f"{a['safe_reader_ms']:.3f} ms (ratio {a['safe_over_plain']:.2f}; target ≤ 1.5)")
        if "split" in results[n]:
            sp = results[n]["split"]
            console.print(f"{n:,}: data split {sp['split_s']:.1f} s, peak RSS {sp['split_rss_mib']:.0f} MiB "
                          f"(anonymous {sp['split_anon_mib']:.0f} MiB)")
    for key in ("ddp", "shares"):
        if key in results:
            console.print(f"{key}: {results[key]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "horm_scale")
    ap.add_argument("--ddp-steps", type=int, default=50, help="DDP run on the largest file (0: none)")
    ap.add_argument("--loader-samples", type=int, default=3000)
    ap.add_argument("--split", action="store_true", help="also time `horm data split` of each HORM file")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    for n in args.sizes:
        lmdb_path, store, conv = prepare(n, args.work)
        results[n] = {"convert": conv, "anchor": anchor(lmdb_path),
                      "horm": measure(lmdb_path, args.work, f"{n}-horm", args.loader_samples),
                      "store": measure(store, args.work, f"{n}-store", args.loader_samples)}
        if args.split:
            results[n]["split"] = split_figures(lmdb_path, args.work)
        print(f"{n}: {json.dumps(results[n])}", flush=True)
    big = args.work / f"synth{args.sizes[-1]}.lmdb"
    results["shares"] = shares_disjoint(big, args.work / f"cache-warm-{args.sizes[-1]}-horm")
    if args.ddp_steps:
        results["ddp"] = ddp_run(big, args.work / f"cache-warm-{args.sizes[-1]}-horm", args.work / "ddp",
                                 args.ddp_steps)
    report(results, args.sizes)
    if args.json:
        args.json.write_text(json.dumps({str(k): v for k, v in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
