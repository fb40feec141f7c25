"""What one `horm demo` run found: the record :mod:`horm.demo.run` fills and :mod:`horm.demo.report` renders.

The report reads nothing else (no stage object, no attribute set on the way), so every number
in ``report.md`` is a field here, and ``demo.json`` is :meth:`DemoResults.to_json`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from horm.demo.settings import DemoSettings, Variant

__all__ = ["DemoResults"]


@dataclass
class DemoResults:
    settings: DemoSettings
    out: Path  # the results folder (the report links files under it)
    counts: dict[str, int] = field(default_factory=dict)  # samples per bundled split
    n_test_reactions: int = 0
    variants: list[Variant] = field(default_factory=list)
    fig1: list[str] = field(default_factory=list)  # PNG names under out/
    fig1_stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # split -> atoms range, mean # imaginary
    model_labels: list[str] = field(default_factory=list)  # trained variants, in order
    train_configs: dict[str, dict] = field(default_factory=dict)  # label -> TrainConfig.to_dict()
    eval: dict[str, dict] = field(default_factory=dict)  # split -> label -> metric summary
    ts_summary: dict[str, dict] = field(default_factory=dict)  # run label -> stage counts
    ts_compare: dict[str, dict] = field(default_factory=dict)  # run label -> against the xTB reference
    fig2: str | None = None  # the Fig. 2 chart's name under out/
    shipped_models: list[str] = field(default_factory=list)  # shipped models that ran
    shipped_left_out: list[str] = field(default_factory=list)  # shipped models the deadline left out
    timings: dict[str, float] = field(default_factory=dict)  # stage -> wall seconds
    versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``demo.json``: settings, timings, evaluation, TS counts and comparisons, versions."""
        return {"settings": asdict(self.settings), "timings_s": self.timings, "eval": self.eval,
                "ts": self.ts_summary,
                "ts_vs_xtb": {k: {kk: vv for kk, vv in v.items() if kk != "per_reaction"}
                              for k, v in self.ts_compare.items()},
                "shipped_left_out": self.shipped_left_out, "versions": self.versions}
