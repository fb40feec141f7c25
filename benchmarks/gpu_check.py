"""GPU check: E-F-H training steps/s, Hessian ms/molecule and peak GPU memory on one device.

    python benchmarks/gpu_check.py [DATA.lmdb] [--batch 128] [--steps 20] [--hessian-batch 32] [--json OUT]
    python benchmarks/gpu_check.py --cpu-smoke        # tiny sizes on the CPU: checks the script runs

Without a CUDA device (and without ``--cpu-smoke``) it prints one line and exits 0. DATA is a
file in the published HORM LMDB format, by default ``/tmp/synth20k.lmdb`` from
``benchmarks/make_synthetic_horm.py 20000 /tmp/synth20k.lmdb``; when it is missing, a small
synthetic file is built in a temporary folder (from ../shared/data/horm_sample_100.lmdb).

Rows (random seeded weights; timings do not depend on them; float32):

- ``train E-F-H``: one optimizer step = ``horm.train.losses.compute_loss`` with HORM's E-F-H
  loss (``efh_loss()``: α=4, β=100, γ=4, N_HR=1, row VJPs under vmap on GPU), backward,
  gradient-norm clip 10 and AdamW, as :class:`horm.train.module.HormModule` does, but timed
  directly on collated batches (``horm.data.batch.collate``, already on the device), not
  through Lightning: no data loading, logging or EMA in the time. For ``horm-equiformer_v2``
  (published size, direct forces) and ``leftnet`` (``horm`` preset, autograd forces).
- ``hessian autograd``: ``model(batch, compute_hessian=True)``, the batched vmapped-VJP path of
  :mod:`horm.hessian.autograd`, all ``--hessian-batch`` molecules in one call; forward included.
- ``hessian row loop``: HORM eval.py's way, one molecule per call and one ``autograd.grad`` per
  force component (3n backward passes), on ``--loop-molecules`` molecules.
- ``hessian direct head``: ``hip-equiformer_v2`` (HIP's head, ``hessian_from="head"``) and our
  ``hessian_head`` (``horm`` preset, ``hessian_mode == "direct"``): one forward pass, no VJPs.

Published figures: neither HORM's paper nor its released eval code states Hessian ms/molecule
on a GPU, and HIP's paper gives its speed-up only as "one to two orders of magnitude", so no
published number is printed next to ours; compare the autograd, row-loop and head rows of one
run instead. Peak memory is ``torch.cuda.max_memory_allocated`` over each row's warm-up and
timed calls (reset before each row); on the CPU it is not measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_synthetic_horm import SHARED_SAMPLE, make_synthetic  # noqa: E402
from horm.data.batch import collate  # noqa: E402
from horm.data.horm_lmdb import HormLmdb  # noqa: E402
from horm.errors import HormError  # noqa: E402
from horm.models.registry import build_model  # noqa: E402
from horm.models.published import HORM_ATOM_REFS_EV  # noqa: E402
from horm.train.losses import compute_loss, efh_loss  # noqa: E402

DEFAULT_DATA = Path("/tmp/synth20k.lmdb")
NO_CUDA = "no CUDA device: gpu_check skipped"
# (model, preset on the GPU, preset for --cpu-smoke)
TRAIN_MODELS = (("horm-equiformer_v2", "published", "small"), ("leftnet", "horm", "tiny"))
AUTOGRAD_MODELS = TRAIN_MODELS
HEAD_MODELS = (("hip-equiformer_v2", "published", "small"), ("hessian_head", "horm", "tiny"))
TASKS = ("train E-F-H", "hessian autograd", "hessian row loop", "hessian direct head")
GRAD_CLIP, LR = 10.0, 5e-4  # horm.train.config defaults


@dataclass
class Row:
    task: str  # one of TASKS
    model: str  # registry name
    preset: str
    batch: int  # molecules per call (the row loop: molecules timed, one per call)
    value: float | None  # steps/s (train) or ms/molecule (hessian); None when it failed
    unit: str
    peak_mib: float | None  # torch.cuda.max_memory_allocated, MiB; None on the CPU
    note: str = ""


class _Device:
    def __init__(self, name: str):
        self.name, self.cuda = name, name.startswith("cuda")

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peak_mib(self) -> float | None:
        return torch.cuda.max_memory_allocated() / 2**20 if self.cuda else None


def load_batches(path: Path, batch: int, count: int, dev: _Device, seed: int = 0) -> list:
    """``count`` batches of ``batch`` random samples of ``path``, collated and on the device."""
    with HormLmdb(path) as ds:
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(ds), size=batch * count, replace=batch * count > len(ds))
        samples = [ds[int(i)] for i in idx]
    return [collate(samples[k * batch:(k + 1) * batch]).to(dev.name) for k in range(count)]


def _model(name: str, preset: str, dev: _Device, train: bool):
    torch.manual_seed(0)
    m = build_model(name, preset)
    m.set_atom_ref(HORM_ATOM_REFS_EV)
    return m.to(dev.name).train(train)


def _guard(fn, row: Row, dev: _Device) -> Row:
    """Run one measurement; an out-of-memory error becomes the row's note, not a crash."""
    dev.reset_peak()
    try:
        row.value = fn()
    except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError in newer torch, the same class
        row.value, row.note = None, "out of memory"
    row.peak_mib = dev.peak_mib()
    dev.reset_peak()
    return row


def time_train(name: str, preset: str, batches: list, steps: int, warmup: int, dev: _Device) -> Row:
    """Optimizer steps per second of the E-F-H loss on ``batches`` (cycled)."""
    model = _model(name, preset, dev, train=True)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    spec = efh_loss()

    def step(b):
        opt.zero_grad(set_to_none=True)
        out = compute_loss(model, b, spec, training=True)
        out.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()

    def run():
        for k in range(warmup):
            step(batches[k % len(batches)])
        dev.sync()
        t0 = time.perf_counter()
        for k in range(steps):
            step(batches[k % len(batches)])
        dev.sync()
        return steps / (time.perf_counter() - t0)

    row = Row("train E-F-H", name, preset, batches[0].num_graphs, None, "steps/s", None,
              f"{steps} steps after {warmup} warm-up")
    return _guard(run, row, dev)


def _timed_ms(fn, repeat: int, dev: _Device) -> float:
    """Median wall ms of ``fn`` over ``repeat`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        dev.sync()
        t0 = time.perf_counter()
        fn()
        dev.sync()
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def row_loop_hessian(model, batch1) -> torch.Tensor:
    """HORM eval.py's Hessian of one molecule: one ``autograd.grad`` of each force component."""
    out = model(batch1, compute_forces=True, create_graph=True)
    pos, forces = out["pos"], out["forces"].reshape(-1)
    rows = [torch.autograd.grad(-f, pos, retain_graph=True)[0].reshape(-1) for f in forces]
    return torch.stack(rows).detach()


def time_hessian(task: str, name: str, preset: str, batches: list, repeat: int, dev: _Device) -> Row:
    """ms per molecule of a full Hessian by ``task`` (a hessian row of TASKS): the row loop runs
    one one-molecule batch per call, the others one call on ``batches[0]``."""
    model = _model(name, preset, dev, train=False)
    head = task == "hessian direct head"
    if hasattr(model, "hessian_from"):  # HIP: its head, or HORM's autograd Jacobian of the forces
        model.hessian_from = "head" if head else "autograd"
    elif head and getattr(model, "hessian_mode", "autograd") != "direct":
        raise ValueError(f"{name} has no direct Hessian head")
    if task == "hessian row loop":
        n = len(batches)

        def fn():
            for b in batches:
                row_loop_hessian(model, b)
    else:
        n = batches[0].num_graphs

        def fn():
            model(batches[0], compute_hessian=True, create_graph=False)

    row = Row(task, name, preset, n, None, "ms/molecule", None, f"median of {repeat} after 1 warm-up")
    return _guard(lambda: _timed_ms(fn, repeat, dev) / n, row, dev)


@dataclass
class Sizes:
    batch: int  # training batch (molecules)
    steps: int  # timed optimizer steps per model
    warmup: int  # untimed steps first
    hessian_batch: int  # molecules per batched Hessian call
    loop_molecules: int  # molecules of the row loop
    repeat: int  # timed Hessian calls (median)


SMOKE = Sizes(batch=4, steps=2, warmup=1, hessian_batch=2, loop_molecules=1, repeat=1)


def run_check(data: Path, sizes: Sizes, dev: _Device, smoke: bool) -> list[Row]:
    """Every row of the table, in TASKS order."""
    pick = (lambda m: (m[0], m[2])) if smoke else (lambda m: (m[0], m[1]))
    train = load_batches(data, sizes.batch, 4, dev, seed=0)
    hb = load_batches(data, sizes.hessian_batch, 1, dev, seed=1)
    loop = load_batches(data, 1, sizes.loop_molecules, dev, seed=2)
    rows = []
    for m in TRAIN_MODELS:
        rows.append(time_train(*pick(m), train, sizes.steps, sizes.warmup, dev))
        _print_row(rows[-1])
    plan = (("hessian autograd", AUTOGRAD_MODELS, hb), ("hessian row loop", AUTOGRAD_MODELS, loop),
            ("hessian direct head", HEAD_MODELS, hb))
    for task, models, batches in plan:
        for m in models:
            rows.append(time_hessian(task, *pick(m), batches, sizes.repeat, dev))
            _print_row(rows[-1])
    return rows


HEADER = f"{'task':<20} {'model':<19} {'preset':<10} {'batch':>5} {'value':>10} {'unit':<12} {'peak MiB':>9}  note"


def _print_row(r: Row) -> None:
    val = "—" if r.value is None else f"{r.value:10.2f}"
    peak = "—" if r.peak_mib is None else f"{r.peak_mib:9.0f}"
    print(f"{r.task:<20} {r.model:<19} {r.preset:<10} {r.batch:>5} {val:>10} {r.unit:<12} {peak:>9}  {r.note}",
          flush=True)


def _data_or_synthetic(data: Path, n: int, tmp: str) -> Path:
    if data.exists():
        return data
    out = Path(tmp) / "synthetic.lmdb"
    print(f"{data} not found: using {n} synthetic samples built from {SHARED_SAMPLE} in a temporary folder")
    make_synthetic(n, out, SHARED_SAMPLE, show_progress=False)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA, help="HORM-format LMDB (synthetic or real)")
    ap.add_argument("--batch", type=int, default=128, help="training batch, molecules")
    ap.add_argument("--steps", type=int, default=20, help="timed optimizer steps per model")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--hessian-batch", type=int, default=32, help="molecules per batched Hessian call")
    ap.add_argument("--loop-molecules", type=int, default=4, help="molecules of HORM's row loop")
    ap.add_argument("--repeat", type=int, default=3, help="timed Hessian calls (median)")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes and presets on the CPU (a few steps, batch 4)")
    ap.add_argument("--json", type=Path, help="write the rows here")
    a = ap.parse_args(argv)
    for k in ("batch", "steps", "hessian_batch", "loop_molecules", "repeat"):
        if getattr(a, k) < 1:
            ap.error(f"--{k.replace('_', '-')} must be >= 1, got {getattr(a, k)}")
    if a.warmup < 0:
        ap.error(f"--warmup must be >= 0, got {a.warmup}")
    if not a.cpu_smoke and not torch.cuda.is_available():
        print(NO_CUDA)
        return 0
    torch.manual_seed(0)
    dev = _Device("cpu" if a.cpu_smoke else "cuda")
    sizes = SMOKE if a.cpu_smoke else Sizes(a.batch, a.steps, a.warmup, a.hessian_batch, a.loop_molecules, a.repeat)
    name = "CPU (smoke sizes)" if a.cpu_smoke else torch.cuda.get_device_name()
    try:
        with tempfile.TemporaryDirectory(prefix="gpu_check.") as tmp:
            data = _data_or_synthetic(a.data, 64 if a.cpu_smoke else 4 * max(sizes.batch, 64), tmp)
            print(f"device {name}; torch {torch.__version__}; data {a.data if data == a.data else 'synthetic'}; "
                  "float32, random weights")
            print(HEADER)
            rows = run_check(data, sizes, dev, a.cpu_smoke)
    except HormError as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return 1
    if a.json:
        a.json.write_text(json.dumps({"device": name, "torch": torch.__version__, "data": str(a.data),
                                      "synthetic_stand_in": not a.data.exists(),
                                      "sizes": asdict(sizes), "rows": [asdict(r) for r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
