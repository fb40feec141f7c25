"""`horm demo`: the whole paper in one command on the bundled xTB data.

Rooms: :mod:`~horm.demo.settings` (what is trained, the budgets), :mod:`~horm.demo.run` (the
stages; they fill a :class:`~horm.demo.results.DemoResults`), :mod:`~horm.demo.results` (that
record, also written as ``demo.json``) and :mod:`~horm.demo.report` (``report.md`` rendered from
the record alone).

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
   (``deadline_s`` = 12.5 min from the start, less ``report_reserve_s``): a model starts only
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

from horm.demo.run import Demo, run_demo
from horm.demo.settings import DemoSettings, Variant, variants

__all__ = ["Demo", "DemoSettings", "Variant", "run_demo", "variants"]
