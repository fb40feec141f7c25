"""`horm demo`: the whole paper in one command on the bundled xTB data.

Stages (each prints what it does and shows progress):

1. **data** — Fig. 1 panels (atoms, referenced energy, imaginary modes) for the bundled
   train / val (in-distribution) / ood splits.
2. **train** — every variant in ``variants()`` for the same step budget and seed:
   ``leftnet`` (autograd forces) and ``leftnet-df`` (direct forces), each with the E-F loss
   (Eq. 2) and the E-F-H loss (Eq. 3); models from the registry that add a direct Hessian
   head or the other paper models are added when they are registered.
3. **evaluate** — Tables 1, 2, A.1 (Markdown + CSV), parity plots and a Fig. 3-style radar,
   on the in-distribution val split and on the out-of-distribution set.
4. **ts** — the TS search (path → TS optimisation with the model Hessian → IRC → intended?)
   on the bundled test reactions, with every model and with the xTB reference; intended
   counts, TS RMSD and barrier error against xTB, and a Fig. 2-style bar chart.
   **shipped** — the same search with the models shipped in the package (``horm model list``:
   ``t1x-xtb-*``, xTB-level, trained on the larger xTB set; float32, as benchmarked), side by
   side with the tiny ones in the same table and chart; skipped with a line when none is
   installed, and in ``--quick``. The stage runs against the demo's deadline
   (``deadline_s`` = 14 min from the start, less ``report_reserve_s``): a model starts only
   when at least ``ceil(n_ts / workers)`` × ``shipped_min_timeout`` is left, and its
   per-reaction timeout is the time left shared over those rounds (at most
   ``shipped_timeout``); the models left out are named on the terminal and in the report.
5. **report** — ``report.md`` with all tables, linked PNGs, a summary paragraph, and the exact
   configs, seeds and versions. It is written to a temporary file and renamed at the very
   end, and any old report is removed at the start, so an interrupted run never leaves a
   report that looks complete.

Determinism: the same seed gives the same metric tables (training, evaluation and TS
search are seeded and run single-threaded per process); wall times are reported
separately and naturally vary.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console

from horm._version import __version__


@dataclass
class Variant:
    label: str  # display name, also the run folder name
    model: str  # registered model name
    loss: str  # "E-F" | "E-F-H" | "E-F-H(full)"
    overrides: dict = field(default_factory=dict)  # TrainConfig dotted overrides


@dataclass
class DemoSettings:
    out: str = "demo_out"  # results folder
    quick: bool = False  # small budget (CI): fewer steps, samples and reactions
    seed: int = 0  # seed of weights, shuffling, row sampling
    steps: int = 800  # optimizer steps per model (same for all)
    batch_size: int = 16  # molecules per batch
    lr: float = 1e-3  # AdamW learning rate
    max_eval: int = 150  # molecules evaluated per split
    n_ts: int = 6  # test reactions for the TS search
    ts_timeout: float = 240.0  # s per reaction
    shipped_timeout: float = 60.0  # s per reaction for each shipped model, at most (stage "shipped")
    shipped_min_timeout: float = 20.0  # s per reaction: a shipped model with less time left is not started
    deadline_s: float = 840.0  # the shipped stage ends by this many s after the demo started (make demo ≤ 15 min)
    report_reserve_s: float = 30.0  # kept back from the deadline for the report
    workers: int = 2  # TS-search worker processes

    @classmethod
    def make(cls, out: str, quick: bool, seed: int = 0) -> "DemoSettings":
        if quick:
            return cls(out=out, quick=True, seed=seed, steps=20, batch_size=8, max_eval=16, n_ts=1,
                       ts_timeout=60.0)
        return cls(out=out, quick=False, seed=seed)


def variants(quick: bool) -> list[Variant]:
    """The models trained by the demo: each backbone with E-F and E-F-H, plus extras when registered."""
    from horm.models.registry import list_models

    v = [
        Variant("leftnet E-F", "leftnet", "E-F", {"loss.hessian": 0.0}),
        Variant("leftnet E-F-H", "leftnet", "E-F-H", {"loss.n_hr": 1}),
        Variant("leftnet-df E-F", "leftnet-df", "E-F", {"loss.hessian": 0.0}),
        Variant("leftnet-df E-F-H", "leftnet-df", "E-F-H", {"loss.n_hr": 2}),
    ]
    registered = set(list_models())
    if "hessian_head" in registered:
        v.append(Variant("leftnet+hessian_head", "hessian_head", "E-F-H(full)",
                         {"loss.hessian": 0.0, "loss.full_hessian": 1.0}))
    return v


def _slug(label: str) -> str:
    return label.replace(" ", "_").replace("+", "_").replace("(", "").replace(")", "")


class Demo:
    def __init__(self, settings: DemoSettings, console: Console | None = None):
        self.s = settings
        self.out = Path(settings.out)
        self.console = console or Console()
        self.timings: dict[str, float] = {}
        self.results: dict = {}
        self.ts_dirs: dict[str, Path] = {}  # TS benchmark folder per run label
        self.t_start = time.perf_counter()  # reset when run() starts; the shipped stage's deadline counts from it
        self.shipped_models: list[str] = []
        self.shipped_left_out: list[str] = []  # shipped models the deadline left out

    # -- helpers ---------------------------------------------------------------------------
    def say(self, msg: str) -> None:
        self.console.print(msg, highlight=False)

    def _stage(self, name: str):
        demo = self

        class _T:
            def __enter__(self):
                demo.say(f"\n[bold cyan]== {name} ==[/bold cyan]")
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                demo.timings[name] = time.perf_counter() - self.t

        return _T()

    # -- stages ----------------------------------------------------------------------------
    def plan(self) -> None:
        from horm.datasets import bundled_path, bundled_test_reactions, load_bundled

        root = bundled_path()
        counts = {sp: len(load_bundled(sp)) for sp in ("train", "val", "ood")}
        self.counts = counts
        self.test_reactions = bundled_test_reactions()[: self.s.n_ts]
        self.variants = variants(self.s.quick)
        self.say(f"[bold]horm demo[/bold] {'(quick)' if self.s.quick else ''} — results go to {self.out.resolve()}/")
        self.say(f"data: {root} — train {counts['train']}, val {counts['val']}, ood {counts['ood']} samples (GFN2-xTB)")
        self.say(f"train: {', '.join(v.label for v in self.variants)} — {self.s.steps} steps each, "
                 f"batch {self.s.batch_size}, seed {self.s.seed}")
        self.say(f"evaluate: ≤ {self.s.max_eval} molecules of val and of ood, full Hessians")
        self.say(f"ts: {len(self.test_reactions)} test reactions × ({len(self.variants)} models + xtb reference)")

    def data(self) -> None:
        from horm.data.stats import fig1_quantities, plot_fig1
        from horm.datasets import load_bundled

        with self._stage("data: Fig. 1 panels"):
            q = {sp: fig1_quantities(load_bundled(sp)) for sp in ("train", "val", "ood")}
            self.fig1 = [p.name for p in plot_fig1(q, self.out)]
            self.fig1_stats = {sp: {"natoms": f"{int(v['natoms'].min())}–{int(v['natoms'].max())}",
                                    "n_imag_mean": float(np.mean(v["n_imag"])) if "n_imag" in v else float("nan")}
                               for sp, v in q.items()}
            for f in self.fig1:
                self.say(f"wrote {self.out / f}")

    def train(self) -> None:
        from horm.datasets import bundled_split_path
        from horm.train.config import TrainConfig
        from horm.train.run import train

        self.models: dict[str, Path] = {}
        self.train_configs: dict[str, dict] = {}
        runs = self.out / "runs"
        with self._stage("train"):
            for k, v in enumerate(self.variants):
                run = runs / _slug(v.label)
                if run.exists():
                    shutil.rmtree(run)
                over = [f"model.name={v.model}", "model.preset=tiny", f"data.train={bundled_split_path('train')}",
                        f"data.val={bundled_split_path('val')}", f"trainer.max_steps={self.s.steps}",
                        f"trainer.batch_size={self.s.batch_size}", f"trainer.seed={self.s.seed}",
                        f"optim.lr={self.s.lr}", "optim.warmup_steps=0", f"out={run}",
                        f"trainer.ckpt_every_n_steps={max(self.s.steps, 1)}", "trainer.limit_val_batches=4",
                        f"trainer.val_every_n_steps={max(self.s.steps // (1 if self.s.quick else 3), 1)}",
                        f"trainer.progress_bar={'false' if self.s.quick else 'true'}"]
                over += [f"{a}={b}" for a, b in v.overrides.items()]
                cfg = TrainConfig.from_yaml(None, over)
                self.say(f"[{k + 1}/{len(self.variants)}] training {v.label} ({v.loss}) → {run}")
                t = time.perf_counter()
                # the full config is saved in the run folder and in report.md; keep the terminal short
                self.models[v.label] = train(cfg, console=Console(quiet=True))
                self.timings[f"train {v.label}"] = time.perf_counter() - t
                self.train_configs[v.label] = cfg.to_dict()

    def evaluate(self) -> None:
        from horm.datasets import load_bundled
        from horm.evaluate.run import evaluate_models

        self.eval: dict[str, dict] = {}
        with self._stage("evaluate"):
            for split, title in (("val", "in-distribution (val)"), ("ood", "out-of-distribution (ood)")):
                results = evaluate_models(self.models, load_bundled(split), self.out / f"eval_{split}",
                                          max_samples=self.s.max_eval, console=self.console, title=f"{title}:")
                self.eval[split] = {k: v[1] for k, v in results.items()}
                self.say(f"wrote tables and plots to {self.out / f'eval_{split}'}")

    def ts(self) -> None:
        self.ts_dirs = {}
        base = self.out / "ts"
        if base.exists():
            shutil.rmtree(base)
        with self._stage("ts"):
            runs = {"xtb (reference)": "xtb", **{k: str(p) for k, p in self.models.items()}}
            for label, pot in runs.items():
                self._ts_search(label, pot, self.s.ts_timeout)
            self._ts_summarise()

    def _ts_search(self, label: str, potential: str, timeout: float, dtype: str = "float64") -> None:
        from horm.ts.benchmark import run_benchmark

        d = self.ts_dirs[label] = self.out / "ts" / _slug(label)
        self.say(f"TS search with {label} on {len(self.test_reactions)} reactions → {d}")
        t = time.perf_counter()
        run_benchmark(self.test_reactions, potential, d, workers=self.s.workers, timeout=timeout, dtype=dtype,
                      on_result=lambda r: self.say(f"  {r.get('rxn')}: {r.get('outcome') or r.get('status')} "
                                                   f"({r.get('seconds', 0):.0f} s)"))
        self.timings[f"ts {label}"] = time.perf_counter() - t

    def _ts_summarise(self) -> None:
        """Stage counts of every TS run so far, each against xTB, and the Fig. 2 chart."""
        from horm.ts.report import summarise_runs

        res = summarise_runs(self.ts_dirs, reference="xtb (reference)", chart=self.out / "fig2_ts.png")
        self.ts_summary, self.ts_compare = res["summaries"], res["compare"]
        self.fig2 = res["chart"].name
        self.say(f"wrote {self.out / self.fig2}")

    def shipped(self) -> None:
        """The models shipped in the package (:mod:`horm.pretrained`), on the same test reactions,
        next to the freshly trained tiny ones; skipped with a line when none is installed."""
        from horm.pretrained import available

        self.shipped_models = available()
        if not self.shipped_models or self.s.quick:
            why = "skipped in --quick" if self.shipped_models else "none in this installation (horm model list)"
            self.say(f"shipped models: {why}; stage skipped")
            return
        with self._stage("shipped models: TS search"):
            rounds = -(-len(self.test_reactions) // max(1, self.s.workers))  # reactions per worker
            for i, name in enumerate(self.shipped_models):
                left = self.s.deadline_s - self.s.report_reserve_s - (time.perf_counter() - self.t_start)
                timeout = min(self.s.shipped_timeout, left / rounds)
                if timeout < min(self.s.shipped_min_timeout, self.s.shipped_timeout):
                    self.say(f"shipped models: {max(left, 0):.0f} s left of the demo's {self.s.deadline_s:.0f} s; "
                             f"not run: {', '.join(self.shipped_models[i:])}")
                    self.shipped_left_out = self.shipped_models[i:]
                    self.shipped_models = self.shipped_models[:i]
                    break
                # float32, as in their benchmark (benchmarks/ts_models.py): 2.5x faster Hessians
                self._ts_search(f"{name} (shipped)", name, timeout, dtype="float32")
            if self.shipped_models:
                self._ts_summarise()

    # -- report ----------------------------------------------------------------------------
    def report(self) -> Path:
        from horm.demo_report import render_report

        text = render_report(self)
        tmp = self.out / "report.md.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.out / "report.md")
        (self.out / "demo.json").write_text(json.dumps({
            "settings": asdict(self.s), "timings_s": self.timings, "eval": self.eval,
            "ts": self.ts_summary, "ts_vs_xtb": {k: {kk: vv for kk, vv in v.items() if kk != "per_reaction"}
                                                 for k, v in self.ts_compare.items()},
            "versions": versions()}, indent=1, default=str))
        return self.out / "report.md"

    def run(self) -> Path:
        import logging
        import warnings

        for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
            logging.getLogger(name).setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", module="lightning")
        # One intra-op thread: the models are tiny, and OpenMP threads that oversubscribe the
        # cores (TS workers, other jobs) slow every step down by 10-100x.
        import torch

        torch.set_num_threads(int(os.environ.get("HORM_THREADS", "1")))
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in ("report.md", "report.md.tmp"):
            (self.out / stale).unlink(missing_ok=True)
        t0 = self.t_start = time.perf_counter()
        self.plan()
        self.data()
        self.train()
        self.evaluate()
        self.ts()
        self.shipped()
        self.timings["total"] = time.perf_counter() - t0
        path = self.report()
        self.say(f"\n[bold green]done[/bold green] in {self.timings['total']:.0f} s — open {path}")
        return path


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"horm": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("torch", "lightning", "numpy", "ase", "tblite", "sella", "pyscf"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def run_demo(out: str = "demo_out", quick: bool = False, seed: int = 0, console: Console | None = None) -> Path:
    """Run the demo; returns the path of ``report.md``."""
    return Demo(DemoSettings.make(out, quick, seed), console).run()
