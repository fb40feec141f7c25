"""``run_jobs``: keyed tasks through one backend into one sink, resumable, with a progress bar.

The loop is the same for every backend: each key the sink does not skip is submitted;
finished Outcomes go to ``sink.put`` as they arrive (so a killed run keeps all it put);
a key repeated in the input runs once. The backend (serial, local processes, Ray) comes
from :class:`~horm.jobs.spec.JobOptions` and starts only when there is something to run.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

from horm.jobs.spec import Job, JobOptions, JobStats, Outcome, Sink


def start_backend(job: Job, options: JobOptions, expected: int | None = None):
    """The backend ``options`` ask for, started (workers loaded)."""
    if options.backend == "ray":
        from horm.jobs.ray_backend import Ray

        return Ray(job, options, expected)
    from horm.jobs.local import Processes, Serial

    return Processes(job, options) if options.backend == "process" else Serial(job, options)


def _count(d: dict, k: str) -> None:
    d[k] = d.get(k, 0) + 1


def run_jobs(items: Iterable[tuple[str, Any]], job: Job, sink: Sink, options: JobOptions = JobOptions(), *,
             total: int | None = None, title: str = "jobs") -> JobStats:
    """Run ``job.task`` on every ``(key, payload)`` of ``items`` not skipped by ``sink``.

    ``total``: the number of items, for the progress bar and the Ray batch size.
    Returns the run's :class:`JobStats`.
    """
    from horm.progress import progress_bar

    stats = JobStats(backend=options.backend, workers=options.workers)
    backend = None
    seen: set[str] = set()
    t0 = time.perf_counter()
    with progress_bar(disable=not options.progress) as prog:
        bar = prog.add_task(title, total=total)

        def land(outs: list[Outcome]) -> None:
            if not outs:
                return
            sink.put(outs)
            for o in outs:
                stats.task_seconds += o.seconds
                stats.task_cpu_seconds += o.cpu_seconds
                if o.ok:
                    stats.ok += 1
                else:
                    _count(stats.failed, o.kind or "error")
            prog.advance(bar, len(outs))

        try:
            for key, payload in items:
                stats.total += 1
                reason = "repeated in the input" if key in seen else sink.skip_reason(key)
                seen.add(key)
                if reason:
                    _count(stats.skipped, reason)
                    prog.advance(bar)
                    continue
                if backend is None:
                    t = time.perf_counter()
                    left = None if total is None else total - stats.total + 1
                    backend = start_backend(job, options, left)
                    stats.startup_seconds = time.perf_counter() - t
                backend.submit(key, payload)
                while backend.busy():
                    land(backend.collect())
            while backend is not None and backend.pending():
                land(backend.collect())
        finally:  # wall time up to the last result; stopping the workers is not counted
            stats.seconds = time.perf_counter() - t0 - stats.startup_seconds
            if backend is not None:
                backend.close()
    return stats
