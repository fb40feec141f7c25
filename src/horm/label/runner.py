"""Resumable labelling: geometries in, a HessianStore of labelled samples out.

``label(input, engine, out_store, workers=N, ray_address=None)`` computes energy, forces
and Hessian for every geometry of ``input`` with an Engine (:mod:`horm.label.engine`).

* **Input**: an xyz/extxyz file (all frames), a horm store, a published HORM LMDB (file
  or directory), or a directory of xyz files. Labels already present in the input are
  dropped before computing (they may come from another level of theory).
* **Keys** (:mod:`horm.label.items`): the sample's own key or ``<file name>:<frame index>``,
  followed by ``#`` and a hash of the geometry. Keys are what makes a run resumable; the
  hash makes an edited or different input a new item.
* **Resume**: a restart skips keys already stored and, unless ``retry_failed``, keys in
  the failures table. The store refuses duplicate keys, so nothing is stored twice.
* **Atomic commits by the parent only**: workers compute and return Samples; the parent
  writes each batch of finished results in one LMDB transaction. A run killed at any
  point keeps everything it committed and never leaves a half record.
* **Failures** (``LabelError`` from the engine, e.g. SCF not converged; a timeout; a bad
  geometry; any other exception) go into the store's failures table with the reason;
  they are never data. A summary line (labelled / skipped / failed, samples/s) ends the run.
* **Backends** (:mod:`horm.jobs`): ``workers == 1`` computes in this process;
  ``workers > 1`` uses long-lived worker processes (one thread each, replaced when an
  item times out or crashes, dying with the parent); ``ray_address`` (``"local"`` or a
  cluster address) sends batches of items to Ray actors. A second run on the same store
  is refused at once (a lock on ``<store>.lock`` names the holder's PID).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from horm.data.formats import check_store_path
from horm.data.convert import drop_if_empty
from horm.data.plausibility import check_written
from horm.data.provenance import check_append, label_provenance
from horm.data.sample import Sample
from horm.data.store import HessianStore
from horm.errors import DataError, LabelError, UsageError
from horm.jobs import Job, JobOptions, Outcome, output_lock, run_jobs
from horm.jobs.spec import one_line
from horm.label.items import open_items, strip_labels

WANT_ALL = ("energy", "forces", "hessian")


# --- one item (runs in a worker) -------------------------------------------------------------

@dataclass
class ItemResult:
    key: str
    sample: Sample | None  # the labelled sample, or None on failure
    reason: str | None = None  # one line, for the failures table
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # wall time inside the worker (engine + validation)


def compute_one(engine, sample: Sample, want=WANT_ALL, threads: int | None = None,
                allow_outliers: bool = False) -> ItemResult:
    """Label one geometry; every failure becomes an ItemResult with a reason, never a raise.

    ``threads``: intra-op threads for this computation (None: auto, 1 below 50 atoms; :mod:`horm.runtime`).
    An engine with its own ``threads`` setting (``dft``: large integral kernels that do use
    several cores) keeps control of its threads. (A timeout is the job runner's: it
    interrupts this call and is recorded as kind "timeout".) Labels outside the bounds of
    :mod:`horm.data.plausibility` are a failure of kind "data", unless ``allow_outliers``.
    """
    from horm.runtime import thread_limit, threads_for

    t0 = time.perf_counter()
    key = sample.key
    try:
        sample.validate(key or "<input>")
        with thread_limit(threads_for(engine, threads, len(sample.numbers))):
            out = engine.compute(sample, want=want)
        out.key, out.rxn, out.origin = key, out.rxn or sample.rxn, out.origin or sample.origin
        check_written(out, key, "engine output", allow_outliers)
        return ItemResult(key, out, seconds=time.perf_counter() - t0)
    except LabelError as exc:
        reason, kind = one_line(exc), "label"
    except DataError as exc:
        reason, kind = f"bad geometry or labels: {one_line(exc)}", "data"
    except Exception as exc:  # noqa: BLE001 - an engine crash must not end the run
        reason, kind = f"{type(exc).__name__}: {one_line(exc)}", "error"
    return ItemResult(key, None, reason, {"kind": kind, "engine": getattr(engine, "name", "?")},
                      time.perf_counter() - t0)


def _the(obj):
    return obj


def _label_task(engine, payload) -> ItemResult:
    sample, want, threads, allow_outliers = payload
    return compute_one(engine, sample, want, threads, allow_outliers)


class _StoreSink:
    """Finished items into the store: one LMDB transaction per batch of outcomes."""

    def __init__(self, store: HessianStore, summary: "LabelSummary", retry_failed: bool, engine_name: str,
                 allow_outliers: bool = False):
        self.store, self.summary, self.engine_name = store, summary, engine_name
        self.allow_outliers = allow_outliers
        self.done_keys = store.keys()
        self.failed_keys = set() if retry_failed else {f["key"] for f in store.failures()}

    def skip_reason(self, key: str) -> str | None:
        if key in self.done_keys:
            return "stored"
        return "failed before" if key in self.failed_keys else None

    def put(self, outcomes: list[Outcome]) -> None:
        results = [o.value if o.ok else ItemResult(o.key, None, o.message, {"kind": o.kind, "engine": self.engine_name},
                                                   o.seconds) for o in outcomes]
        good = [r.sample for r in results if r.sample is not None]
        s = self.summary
        if good:
            idx = self.store.extend(good, skip_existing=True, allow_outliers=self.allow_outliers)
            s.labelled += sum(i >= 0 for i in idx)
            s.skipped += sum(i < 0 for i in idx)
        for r in results:
            s.engine_seconds += r.seconds
            if r.sample is None:
                self.store.record_failure(r.key, r.reason or "unknown", seconds=round(r.seconds, 3), **r.details)
                s.failed += 1
                kind = r.details.get("kind", "error")
                s.reasons[kind] = s.reasons.get(kind, 0) + 1


# --- the parent loop ------------------------------------------------------------------------

@dataclass
class LabelSummary:
    total: int = 0  # items in the input
    labelled: int = 0  # stored by this run
    skipped: int = 0  # already stored
    skipped_failed: int = 0  # in the failures table, not retried
    failed: int = 0  # failed in this run
    seconds: float = 0.0  # wall time of the run (after start-up)
    startup_seconds: float = 0.0  # pool / Ray start-up
    engine_seconds: float = 0.0  # summed worker time over computed items
    engine_cpu_seconds: float = 0.0  # summed worker CPU time over computed items
    backend: str = "serial"
    workers: int = 1
    reasons: dict[str, int] = field(default_factory=dict)  # failure kind -> count
    spin_notes: dict[str, int] = field(default_factory=dict)  # e.g. "defaulted to a doublet" -> count

    @property
    def computed(self) -> int:
        return self.labelled + self.failed

    @property
    def rate(self) -> float:
        """Computed items per second of wall time (samples/s)."""
        return self.computed / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        s = (f"labelled {self.labelled}, skipped {self.skipped} (already stored)"
             f"{f' + {self.skipped_failed} (failed before)' if self.skipped_failed else ''}, failed {self.failed}"
             f" of {self.total} in {self.seconds:.1f} s ({self.rate:.2f} samples/s, {self.backend} x{self.workers})")
        for note, k in self.spin_notes.items():
            s += f" [{k} item(s) {note}]"
        if self.reasons:
            s += " [failures: " + ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items())) + "]"
        return s

    def record(self) -> dict:
        return {"total": self.total, "labelled": self.labelled, "skipped": self.skipped,
                "skipped_failed": self.skipped_failed, "failed": self.failed,
                "seconds": round(self.seconds, 3), "samples_per_s": round(self.rate, 4),
                "backend": self.backend, "workers": self.workers, "notes": dict(self.spin_notes)}


def open_or_create_store(out: str | os.PathLike, engine, source: str, allow_mixed: bool = False) -> HessianStore:
    """Open ``out`` for appending (level of theory, engine and its settings must match,
    unless ``allow_mixed``) or create it."""
    out = Path(out)
    if out.exists():
        store = HessianStore.open(out, readonly=False)
        try:
            check_append(store, label_provenance(engine.level_of_theory, engine.name, dict(engine.settings)),
                         allow_mixed)
        except BaseException:
            store.close()
            raise
        return store
    return HessianStore.create(out, engine.level_of_theory, engine=engine.name,
                               engine_settings=dict(engine.settings), source=str(source))


def label(input: str | os.PathLike, engine, out_store: str | os.PathLike, *, workers: int | None = 1,
          ray_address: str | None = None, retry_failed: bool = False, timeout: float | None = None,
          want=WANT_ALL, show_progress: bool = True, print_summary: bool = True,
          jobs: JobOptions | None = None, charge: int | None = None, multiplicity: int | None = None,
          threads: int | None = None, allow_mixed: bool = False, allow_outliers: bool = False) -> LabelSummary:
    """Label every geometry of ``input`` with ``engine`` into the store ``out_store``.

    workers: parallel computations (1: in this process; None: one per core, at most one per
    geometry). ray_address: None (local worker
    processes), ``"local"`` (start a local Ray with ``num_cpus=workers``) or a Ray address.
    retry_failed: recompute keys in the failures table. timeout: seconds per item (a
    failure "timeout" when exceeded). ``jobs``, when given, replaces workers, ray_address,
    timeout and show_progress. charge, multiplicity: override the input's (odd electrons
    with no multiplicity given: a doublet, see :func:`open_items`). threads: intra-op
    threads per computation (None: auto, 1 below 50 atoms; :mod:`horm.runtime`); with
    ``jobs``, its ``threads`` too. ``out_store`` must not
    carry an xyz-family or ASE extension. allow_mixed: append to a store of other labels
    (it is then marked "mixed"). allow_outliers: store finite labels outside the bounds of
    :mod:`horm.data.plausibility` (else such an item is a failure). A second run on the same store is refused
    (:class:`horm.jobs.OutputLocked`). Returns the run's :class:`LabelSummary`.
    """
    if workers is not None and workers < 1:
        raise UsageError(f"workers must be >= 1, got {workers}")
    if timeout is not None and not timeout > 0:
        raise UsageError(f"timeout must be > 0 seconds, got {timeout}")
    check_store_path(out_store)
    with output_lock(out_store):
        summary = LabelSummary()
        n, items = open_items(input, charge, multiplicity, summary.spin_notes)
        if jobs is None:
            from horm.runtime import default_workers

            jobs = JobOptions(workers=default_workers(n) if workers is None else workers, ray=ray_address,
                              timeout=timeout, threads=threads or 1, progress=show_progress)
        opts = jobs
        summary.total, summary.workers, summary.backend = n, opts.workers, opts.backend
        created = not Path(out_store).exists()
        store = open_or_create_store(out_store, engine, str(Path(input).resolve()), allow_mixed)
        try:
            sink = _StoreSink(store, summary, retry_failed, engine.name, allow_outliers)
            stats = run_jobs(((s.key, (strip_labels(s), want, threads, allow_outliers)) for s in items()),
                             Job(partial(_the, engine), _label_task),
                             sink, opts, total=n, title=f"label ({engine.name})")
            summary.skipped += stats.skipped.get("stored", 0) + stats.skipped.get("repeated in the input", 0)
            summary.skipped_failed = stats.skipped.get("failed before", 0)
            summary.seconds, summary.startup_seconds = stats.seconds, stats.startup_seconds
            summary.engine_cpu_seconds = stats.task_cpu_seconds
            store.update_meta(last_run=summary.record())
        except BaseException:
            drop_if_empty(store, created)  # a new store that got nothing (e.g. a full disk) is removed
            raise
        finally:
            store.close()
    if print_summary:
        print(summary.line(), flush=True)
    return summary
