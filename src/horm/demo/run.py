"""The stages of `horm demo` (see :mod:`horm.demo`): each fills its part of a :class:`DemoResults`."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from horm.demo.results import DemoResults
from horm.demo.settings import DemoSettings, slug, variants

__all__ = ["Demo", "run_demo"]


class Demo:
    def __init__(self, settings: DemoSettings, console: Console | None = None):
        self.s = settings
        self.out = Path(settings.out)
        self.console = console or Console()
        self.results = DemoResults(settings, self.out)
        self.models: dict[str, Path] = {}  # trained variant -> model file
        self.test_reactions: list[Path] = []
        self.ts_dirs: dict[str, Path] = {}  # TS benchmark folder per run label
        self.t_start = time.perf_counter()  # reset when run() starts; the shipped stage's deadline counts from it

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
                demo.results.timings[name] = time.perf_counter() - self.t

        return _T()

    # -- stages ----------------------------------------------------------------------------
    def plan(self) -> None:
        from horm.datasets import bundled_path, bundled_test_reactions, load_bundled

        root = bundled_path()
        counts = {sp: len(load_bundled(sp)) for sp in ("train", "val", "ood")}
        self.test_reactions = bundled_test_reactions()[: self.s.n_ts]
        r = self.results
        r.counts, r.n_test_reactions, r.variants = counts, len(self.test_reactions), variants(self.s.quick)
        self.say(f"[bold]horm demo[/bold] {'(quick)' if self.s.quick else ''} — results go to {self.out.resolve()}/")
        self.say(f"data: {root} — train {counts['train']}, val {counts['val']}, ood {counts['ood']} samples (GFN2-xTB)")
        self.say(f"train: {', '.join(v.label for v in r.variants)} — {self.s.steps} steps each, "
                 f"batch {self.s.batch_size}, seed {self.s.seed}")
        self.say(f"evaluate: ≤ {self.s.max_eval} molecules of val and of ood, full Hessians")
        self.say(f"ts: {len(self.test_reactions)} test reactions × ({len(r.variants)} models + xtb reference)")

    def data(self) -> None:
        from horm.data.stats import fig1_quantities, plot_fig1
        from horm.datasets import load_bundled

        with self._stage("data: Fig. 1 panels"):
            q = {sp: fig1_quantities(load_bundled(sp)) for sp in ("train", "val", "ood")}
            r = self.results
            r.fig1 = [p.name for p in plot_fig1(q, self.out)]
            r.fig1_stats = {sp: {"natoms": f"{int(v['natoms'].min())}–{int(v['natoms'].max())}",
                                 "n_imag_mean": float(np.mean(v["n_imag"])) if "n_imag" in v else float("nan")}
                            for sp, v in q.items()}
            for f in r.fig1:
                self.say(f"wrote {self.out / f}")

    def train(self) -> None:
        from horm.datasets import bundled_split_path
        from horm.train.config import TrainConfig
        from horm.train.run import train

        self.models = {}
        variants_ = self.results.variants
        runs = self.out / "runs"
        with self._stage("train"):
            for k, v in enumerate(variants_):
                run = runs / slug(v.label)
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
                self.say(f"[{k + 1}/{len(variants_)}] training {v.label} ({v.loss}) → {run}")
                t = time.perf_counter()
                # the full config is saved in the run folder and in report.md; keep the terminal short
                self.models[v.label] = train(cfg, console=Console(quiet=True))
                self.results.timings[f"train {v.label}"] = time.perf_counter() - t
                self.results.train_configs[v.label] = cfg.to_dict()
                self.results.model_labels.append(v.label)

    def evaluate(self) -> None:
        from horm.datasets import load_bundled
        from horm.evaluate.run import evaluate_models

        with self._stage("evaluate"):
            for split, title in (("val", "in-distribution (val)"), ("ood", "out-of-distribution (ood)")):
                results = evaluate_models(self.models, load_bundled(split), self.out / f"eval_{split}",
                                          max_samples=self.s.max_eval, console=self.console, title=f"{title}:")
                self.results.eval[split] = {k: v[1] for k, v in results.items()}
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

        d = self.ts_dirs[label] = self.out / "ts" / slug(label)
        self.say(f"TS search with {label} on {len(self.test_reactions)} reactions → {d}")
        t = time.perf_counter()
        run_benchmark(self.test_reactions, potential, d, workers=self.s.workers, timeout=timeout, dtype=dtype,
                      on_result=lambda r: self.say(f"  {r.get('rxn')}: {r.get('outcome') or r.get('status')} "
                                                   f"({r.get('seconds', 0):.0f} s)"))
        self.results.timings[f"ts {label}"] = time.perf_counter() - t

    def _ts_summarise(self) -> None:
        """Stage counts of every TS run so far, each against xTB, and the Fig. 2 chart."""
        from horm.ts.report import summarise_runs

        res = summarise_runs(self.ts_dirs, reference="xtb (reference)", chart=self.out / "fig2_ts.png")
        r = self.results
        r.ts_summary, r.ts_compare, r.fig2 = res["summaries"], res["compare"], res["chart"].name
        self.say(f"wrote {self.out / r.fig2}")

    def shipped(self) -> None:
        """The models shipped in the package (:mod:`horm.pretrained`), on the same test reactions,
        next to the freshly trained tiny ones; skipped with a line when none is installed."""
        from horm.pretrained import available

        r = self.results
        # the paper's pair first (E-F-H, then E-F): when the deadline leaves some out, those are the rest
        r.shipped_models = sorted(available(),
                                  key=lambda n: (not n.endswith("leftnet-efh"), not n.endswith("leftnet-ef")))
        if not r.shipped_models or self.s.quick:
            why = "skipped in --quick" if r.shipped_models else "none in this installation (horm model list)"
            self.say(f"shipped models: {why}; stage skipped")
            return
        with self._stage("shipped models: TS search"):
            rounds = -(-len(self.test_reactions) // max(1, self.s.workers))  # reactions per worker
            for i, name in enumerate(r.shipped_models):
                left = self.s.deadline_s - self.s.report_reserve_s - (time.perf_counter() - self.t_start)
                timeout = min(self.s.shipped_timeout, left / rounds)
                if timeout < min(self.s.shipped_min_timeout, self.s.shipped_timeout):
                    self.say(f"shipped models: {max(left, 0):.0f} s left of the demo's {self.s.deadline_s:.0f} s; "
                             f"not run: {', '.join(r.shipped_models[i:])}")
                    r.shipped_left_out, r.shipped_models = r.shipped_models[i:], r.shipped_models[:i]
                    break
                # float32, as in their benchmark (benchmarks/ts_models.py): 2.5x faster Hessians
                self._ts_search(f"{name} (shipped)", name, timeout, dtype="float32")
            self._refined()
            if r.shipped_models:
                self._ts_summarise()

    def _refined(self) -> None:
        """The shipped E-F and E-F-H models' proposals refined and judged on xTB (horm.ts.refined):
        the proposals are those of the shipped run just made, so only the reference's part runs."""
        from horm.ts.benchmark import run_benchmark

        for name in [m for m in self.results.shipped_models if m.endswith(("-ef", "-efh"))]:
            label = f"{name} → xtb (refined)"
            d = self.ts_dirs[label] = self.out / "ts" / slug(label.replace(" → ", "_to_"))
            self.say(f"refined: {name}'s proposals confirmed on xTB → {d}")
            t = time.perf_counter()
            run_benchmark(self.test_reactions, name, d, workers=self.s.workers, timeout=self.s.shipped_timeout,
                          dtype="float32", refine="xtb", proposals=self.ts_dirs[f"{name} (shipped)"],
                          on_result=lambda r: self.say(f"  {r.get('rxn')}: {r.get('outcome') or r.get('status')}, "
                                                       f"{(r.get('reference_calls') or {}).get('energy_forces')} "
                                                       f"xTB calls ({r.get('seconds', 0):.0f} s)"))
            self.results.timings[f"ts {label}"] = time.perf_counter() - t

    # -- report ----------------------------------------------------------------------------
    def report(self) -> Path:
        from horm.demo.report import render_report
        from horm.runtime import versions

        self.results.versions = versions()
        tmp = self.out / "report.md.tmp"
        tmp.write_text(render_report(self.results))
        os.replace(tmp, self.out / "report.md")
        (self.out / "demo.json").write_text(json.dumps(self.results.to_json(), indent=1, default=str))
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
        self.results.timings["total"] = time.perf_counter() - t0
        path = self.report()
        self.say(f"\n[bold green]done[/bold green] in {self.results.timings['total']:.0f} s — open {path}")
        return path


def run_demo(out: str = "demo_out", quick: bool = False, seed: int = 0, console: Console | None = None) -> Path:
    """Run the demo; returns the path of ``report.md``."""
    return Demo(DemoSettings.make(out, quick, seed), console).run()
