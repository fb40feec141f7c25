"""Evaluate several models on one dataset, side by side: load → evaluate → summarise → report.

``evaluate_models({name: path}, data, out)`` is what ``horm evaluate``, the demo and
``benchmarks/ef_vs_efh.py`` do: each model file is loaded (on ``device``, in ``dtype``;
None keeps the precision it was trained in), checked against the data's level of theory
(a mismatch is a warning), run over the same samples (:func:`horm.evaluate.metrics.evaluate_model`), summarised
(:func:`horm.evaluate.metrics.summarise`) and, with ``out``, written as tables and plots
(:func:`horm.evaluate.report.write_report`).

Before any model runs, every sample to evaluate is read once and its labels checked
(:mod:`horm.data.plausibility`; |E − Σ ref|/N against references fitted on those samples). A
violation is a DataError naming the sample; with ``allow_outliers`` the samples with impossible
labels (NaN/inf, |E|/N beyond any element's) are skipped and the finite outliers kept. Either way the skipped samples, the outliers
and any non-finite metric a model gave are counted in the terminal and in the report: a sample
never leaves the means silently.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from horm.errors import UsageError
from horm.evaluate.metrics import Predictions, dropped_values, evaluate_model, sample_indices, summarise


def model_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Readable, unique model names: the run folder name (or file stem), numbered if repeated."""
    raw = []
    for p in map(Path, paths):
        if p.is_dir():
            raw.append(p.name)
        elif p.parent.name == "checkpoints":
            raw.append(f"{p.parent.parent.name}:{p.stem}")
        else:
            raw.append(p.parent.name if p.stem == "model" else p.stem)
    return [n if raw.count(n) == 1 else f"{n}#{raw[:i].count(n) + 1}" for i, n in enumerate(raw)]


def evaluate_models(models: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike], data,
                    out: str | os.PathLike | None = None, *, batch_size: int = 8, hessian: bool = True,
                    max_samples: int | None = None, spread: bool = False, device: str = "cpu",
                    dtype: str | None = None,
                    threads: int | None = None, console=None, title: str = "evaluating",
                    allow_outliers: bool = False) -> dict[str, tuple[dict, dict, Predictions]]:
    """Evaluate every model on ``data``; returns ``{name: (metrics, summary, predictions)}``.

    models: ``{name: model file or run folder}``, or a list of paths (named by
    :func:`model_names`). data: a dataset (indexable of Samples) or a path for
    :func:`horm.data.io.open_dataset`. out: folder for the tables and plots (None: none).
    threads: intra-op threads (None: auto, 1 for small molecules; :mod:`horm.runtime`).
    console: a rich Console for progress bars and warnings (None: neither shown).
    allow_outliers: evaluate despite implausible labels (see the module docstring).
    """
    from rich.progress import Progress

    from horm.data.io import level_of_theory, open_dataset
    from horm.models.domain import theory_mismatch
    from horm.models.files import load_model
    from horm.runtime import auto_threads, thread_limit

    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    if not isinstance(models, Mapping):
        models = dict(zip(model_names(models), models))
    ds = open_dataset(data) if isinstance(data, (str, os.PathLike)) else data
    data_level = level_of_theory(ds)
    n_atoms = len(ds[0].numbers) if len(ds) else None
    idx, notes = checked_indices(ds, sample_indices(len(ds), max_samples, spread), allow_outliers)
    results = {}
    with Progress(console=console, transient=True, disable=console is None) as prog, \
            thread_limit(auto_threads(threads, n_atoms)):
        for name, path in models.items():
            model, info = load_model(path, device=device, dtype=dtype)
            warning = theory_mismatch(info["level_of_theory"], data_level)
            if warning and console is not None:
                console.print(f"[yellow]warning:[/yellow] {name}: {warning}", highlight=False, soft_wrap=True)
            task = prog.add_task(f"{title} {name}", total=None)
            metrics, preds = evaluate_model(model, ds, batch_size=batch_size, hessian=hessian, indices=idx,
                                            progress=lambda d, t, task=task: prog.update(task, completed=d, total=t))
            results[name] = (metrics, summarise(metrics), preds)
            notes += [f"{name}: {k} not finite for {v} molecule(s), left out of its mean and median"
                      for k, v in dropped_values(metrics, preds).items()]
    for line in notes if console is not None else ():
        console.print(f"[yellow]warning:[/yellow] {line}", highlight=False, soft_wrap=True)
    if out is not None:
        from horm.evaluate.report import write_report

        write_report(results, out, notes=notes)
    return results


def checked_indices(ds, idx: list[int], allow_outliers: bool) -> tuple[list[int], list[str]]:
    """The label check of the samples at ``idx``: (the indices to evaluate, lines on what was skipped
    or kept); a DataError naming the first bad sample unless ``allow_outliers``."""
    from horm.data.plausibility import scan_labels

    scan = scan_labels(ds, idx)
    scan.add_referenced(scan.fit_refs(range(len(idx))), "references fitted on the evaluated samples")
    if not allow_outliers:
        scan.raise_first(False)
    notes = []
    if scan.skipped:
        notes.append(f"skipped {len(scan.skipped)} of {len(idx)} samples with impossible labels (NaN/inf, |E|/N): "
                     + "; ".join(f"{scan.name(p)}: {m}" for p, m in sorted(scan.skipped.items())[:5]))
    kept = scan.outlier_lines()
    if kept:
        notes.append(f"kept {len(kept)} sample(s) outside the label bounds (--allow-outliers): " + "; ".join(kept[:5]))
    return [i for p, i in enumerate(idx) if p not in scan.skipped], notes
