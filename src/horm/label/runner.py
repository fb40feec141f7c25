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
* **Backends**: ``workers == 1`` computes in this process; ``workers > 1`` uses a spawn
  process pool with ``OMP_NUM_THREADS=1`` per worker; ``ray_address`` (``"local"`` or
  a cluster address) sends ``ray.remote`` tasks and consumes them with ``ray.wait`` as
  they finish.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from horm.data.formats import check_store_path
from horm.data.provenance import check_append, label_provenance
from horm.data.sample import Sample
from horm.data.store import HessianStore
from horm.errors import DataError, LabelError, UsageError
from horm.label.items import open_items, strip_labels

WANT_ALL = ("energy", "forces", "hessian")


# --- the worker side -------------------------------------------------------------------------

class LabelTimeout(Exception):
    pass


@contextmanager
def _time_limit(seconds: float | None):
    """Raise LabelTimeout after ``seconds`` (SIGALRM; only in a process's main thread)."""
    if not seconds:
        yield
        return

    def handler(signum, frame):
        raise LabelTimeout(f"timeout after {seconds:g} s")

    try:
        old = signal.signal(signal.SIGALRM, handler)
    except ValueError:  # not the main thread: no time limit available
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class ItemResult:
    key: str
    sample: Sample | None  # the labelled sample, or None on failure
    reason: str | None = None  # one line, for the failures table
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # wall time inside the worker (engine + validation)


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return msg[0] if msg else type(exc).__name__


def compute_one(engine, sample: Sample, want=WANT_ALL, timeout: float | None = None,
                threads: int | None = None) -> ItemResult:
    """Label one geometry; every failure becomes an ItemResult with a reason, never a raise.

    ``threads``: intra-op threads for this computation (None: auto, 1 below 50 atoms; :mod:`horm.runtime`).
    An engine with its own ``threads`` setting (``dft``: large integral kernels that do use
    several cores) keeps control of its threads.
    """
    from horm.runtime import thread_limit, threads_for

    t0 = time.perf_counter()
    key = sample.key
    try:
        sample.validate(key or "<input>")
        with _time_limit(timeout), thread_limit(threads_for(engine, threads, len(sample.numbers))):
            out = engine.compute(sample, want=want)
        out.key, out.rxn, out.origin = key, out.rxn or sample.rxn, out.origin or sample.origin
        out.validate(key, "engine output")
        return ItemResult(key, out, seconds=time.perf_counter() - t0)
    except LabelError as exc:
        reason, kind = _one_line(exc), "label"
    except LabelTimeout as exc:
        reason, kind = _one_line(exc), "timeout"
    except DataError as exc:
        reason, kind = f"bad geometry or labels: {_one_line(exc)}", "data"
    except Exception as exc:  # noqa: BLE001 - an engine crash must not end the run
        reason, kind = f"{type(exc).__name__}: {_one_line(exc)}", "error"
    return ItemResult(key, None, reason, {"kind": kind, "engine": getattr(engine, "name", "?")},
                      time.perf_counter() - t0)


_WORKER_ENGINE = None


def _pool_init(engine) -> None:
    global _WORKER_ENGINE
    os.environ["OMP_NUM_THREADS"] = "1"
    _WORKER_ENGINE = engine


def _ping(_) -> int:
    return os.getpid()


def _pool_task(sample: Sample, want, timeout, threads) -> ItemResult:
    return compute_one(_WORKER_ENGINE, sample, want, timeout, threads)


# --- backends: submit work, collect what has finished -----------------------------------------

def _lost(key: str, exc: BaseException) -> ItemResult:
    """A task that returned no result (worker crashed, unpicklable result)."""
    return ItemResult(key, None, f"worker error: {type(exc).__name__}: {_one_line(exc)}", {"kind": "worker"})


class _Serial:
    def __init__(self, engine, want, timeout, threads=None):
        self.engine, self.want, self.timeout, self.threads = engine, want, timeout, threads

    def submit(self, sample):
        return compute_one(self.engine, sample, self.want, self.timeout, self.threads)

    def wait(self, handles):
        return list(handles), []

    def close(self):
        pass


class _Pool:
    def __init__(self, engine, want, timeout, workers, threads=None):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.want, self.timeout, self.threads = want, timeout, threads
        old = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"  # spawned children copy the environment at start
        try:
            self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                            initializer=_pool_init, initargs=(engine,))
            # start every worker now, while OMP_NUM_THREADS=1 is set
            list(self.pool.map(_ping, range(workers)))
        finally:
            if old is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = old

    def submit(self, sample):
        fut = self.pool.submit(_pool_task, sample, self.want, self.timeout, self.threads)
        fut.horm_key = sample.key
        return fut

    def wait(self, handles):
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        done, rest = wait(handles, return_when=FIRST_COMPLETED)
        out = []
        for f in done:
            try:
                out.append(f.result())
            except BrokenProcessPool:
                raise  # a dead pool ends the run; a restart resumes it
            except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be pickled
                out.append(_lost(f.horm_key, exc))
        return out, list(rest)

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Ray:
    def __init__(self, engine, want, timeout, workers, address, threads=None):
        import ray

        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            env = {"env_vars": {"OMP_NUM_THREADS": "1"}}
            if address == "local":
                ray.init(num_cpus=workers, include_dashboard=False, runtime_env=env,
                         log_to_driver=False, logging_level="ERROR")
            else:
                ray.init(address=address, runtime_env=env, log_to_driver=False, logging_level="ERROR")
            self.started = True
        self.task = ray.remote(num_cpus=1, max_retries=0)(compute_one)
        self.keys: dict = {}
        self.engine_ref = ray.put(engine)
        self.want, self.timeout, self.threads = want, timeout, threads

    def submit(self, sample):
        ref = self.task.remote(self.engine_ref, sample, self.want, self.timeout, self.threads)
        self.keys[ref] = sample.key
        return ref

    def wait(self, handles):
        ray = self.ray
        done, rest = ray.wait(handles, num_returns=1)
        if rest:  # take everything else that has finished too
            more, rest = ray.wait(rest, num_returns=len(rest), timeout=0)
            done += more
        out = []
        for ref in done:
            key = self.keys.pop(ref)
            try:
                out.append(ray.get(ref))
            except Exception as exc:  # noqa: BLE001 - a crashed worker fails its item only
                out.append(_lost(key, exc))
        return out, rest

    def close(self):
        if self.started:
            self.ray.shutdown()


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
          want=WANT_ALL, max_in_flight: int | None = None, show_progress: bool = True,
          print_summary: bool = True, charge: int | None = None, multiplicity: int | None = None,
          threads: int | None = None, allow_mixed: bool = False) -> LabelSummary:
    """Label every geometry of ``input`` with ``engine`` into the store ``out_store``.

    workers: parallel computations (1: in this process; None: one per core, at most one per
    geometry). ray_address: None (local process
    pool), ``"local"`` (start a local Ray with ``num_cpus=workers``) or a Ray address.
    retry_failed: recompute keys in the failures table. timeout: seconds per item (a
    failure "timeout" when exceeded). charge, multiplicity: override the input's (odd
    electrons with no multiplicity given: a doublet, see :func:`open_items`). threads:
    intra-op threads per computation (None: auto, 1 below 50 atoms; :mod:`horm.runtime`).
    ``out_store`` must not carry an xyz-family or ASE extension. allow_mixed: append to a
    store of other labels (it is then marked "mixed"). Returns the run's :class:`LabelSummary`.
    """
    from horm.data.convert import progress_bar

    if workers is not None and workers < 1:
        raise UsageError(f"workers must be >= 1, got {workers}")
    if timeout is not None and not timeout > 0:
        raise UsageError(f"timeout must be > 0 seconds, got {timeout}")
    check_store_path(out_store)
    summary = LabelSummary()
    n, items = open_items(input, charge, multiplicity, summary.spin_notes)
    if workers is None:
        from horm.runtime import default_workers

        workers = default_workers(n)
    summary.total, summary.workers = n, workers
    store = open_or_create_store(out_store, engine, str(Path(input).resolve()), allow_mixed)
    try:
        done_keys = store.keys()
        failed_keys = {f["key"] for f in store.failures()}
        summary.backend = "ray" if ray_address else "process" if workers > 1 else "serial"
        backend = None

        def start():  # only when there is something to compute (a finished run starts nothing)
            t = time.perf_counter()
            if ray_address:
                b = _Ray(engine, want, timeout, workers, ray_address, threads)
            elif workers > 1:
                b = _Pool(engine, want, timeout, workers, threads)
            else:
                b = _Serial(engine, want, timeout, threads)
            summary.startup_seconds = time.perf_counter() - t
            return b

        t0 = time.perf_counter()
        limit = max_in_flight or 2 * workers
        try:
            with progress_bar(disable=not show_progress) as prog:
                task = prog.add_task(f"label ({engine.name})", total=n)

                def commit(results: list[ItemResult]) -> None:
                    good = [r.sample for r in results if r.sample is not None]
                    if good:
                        idx = store.extend(good, skip_existing=True)
                        summary.labelled += sum(i >= 0 for i in idx)
                        summary.skipped += sum(i < 0 for i in idx)
                    for r in results:
                        summary.engine_seconds += r.seconds
                        if r.sample is None:
                            store.record_failure(r.key, r.reason or "unknown", seconds=round(r.seconds, 3), **r.details)
                            summary.failed += 1
                            kind = r.details.get("kind", "error")
                            summary.reasons[kind] = summary.reasons.get(kind, 0) + 1
                    prog.advance(task, len(results))

                pending: list = []
                for s in items():
                    if s.key in done_keys:
                        summary.skipped += 1
                        prog.advance(task)
                        continue
                    if s.key in failed_keys and not retry_failed:
                        summary.skipped_failed += 1
                        prog.advance(task)
                        continue
                    done_keys.add(s.key)  # a key repeated in the input is computed once
                    if backend is None:
                        backend = start()
                        t0 += summary.startup_seconds
                    pending.append(backend.submit(strip_labels(s)))
                    while len(pending) >= limit:
                        results, pending = backend.wait(pending)
                        commit(results)
                while pending:
                    results, pending = backend.wait(pending)
                    commit(results)
        finally:
            if backend is not None:
                backend.close()
        summary.seconds = time.perf_counter() - t0
        store.update_meta(last_run=summary.record())
    finally:
        store.close()
    if print_summary:
        print(summary.line(), flush=True)
    return summary
