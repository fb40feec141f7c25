"""The ``ray`` backend: ``workers`` long-lived Ray actors, fed batches of keys.

Each actor (one CPU, ``threads`` threads) loads the job's object once. One Ray call
carries a batch of several keys, so Ray's per-call cost (scheduling, object store) is
paid once per batch, not per key: with xTB-sized tasks (~0.1 s) single-key calls would
eat much of the second worker's gain. Two batches are queued on each actor, so that it
does not idle while the parent collects the previous one. Batch size: ``options.batch``, else
``ceil(n / (4 × workers))`` clamped to [1, 16], so that every actor gets a few batches
and the tail stays short.

Timeouts: inside the actor each key runs under a SIGALRM limit (a ``timeout`` failure;
the actor goes on). As a backstop, a batch that overruns ``len(batch) × (timeout + 10 s)``
gets its actor killed and replaced, and its keys are sent again one per call, so that only
the key that hangs fails. An actor that dies (``crash``) is handled the same way.

``ray="local"`` starts a private local Ray with ``num_cpus=workers`` (shut down at the
end; :mod:`horm.jobs.reaper` ends its processes if this one is killed); any other value is a cluster address (``ray.init(address=...)``), where horm must
be installed on every node.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import deque

from horm.jobs.spec import Job, JobOptions, Outcome
from horm.jobs.worker import THREAD_VARS, limit_threads, load, own_session, run_task

_GRACE = 10.0  # seconds per key beyond the timeout before a batch's actor is killed
_DEPTH = 2  # batches queued per actor


class _Actor:
    def __init__(self, job: Job, threads: int):
        own_session()
        limit_threads(threads)
        self.job = job
        self.obj, self.load_error = load(job)

    def pid(self) -> int:
        return os.getpid()

    def run(self, items: list, timeout: float | None) -> list[Outcome]:
        return [run_task(self.job, self.obj, self.load_error, k, p, timeout) for k, p in items]


def auto_batch(n: int | None, workers: int) -> int:
    if not n:
        return 4
    return max(1, min(16, math.ceil(n / (4 * workers))))


class Ray:
    def __init__(self, job: Job, options: JobOptions, expected: int | None = None):
        import ray

        self.ray = ray
        self.started = False
        self.reaper = None
        if not ray.is_initialized():
            env = {v: str(options.threads) for v in THREAD_VARS}
            if options.ray == "local":
                env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in sys.path if p))
                ray.init(num_cpus=options.workers, include_dashboard=False, log_to_driver=False,
                         logging_level="ERROR", runtime_env={"env_vars": env})
                from horm.jobs.reaper import Reaper

                self.reaper = Reaper()  # Ray's agents die with this process too
            else:
                ray.init(address=options.ray, log_to_driver=False, logging_level="ERROR",
                         runtime_env={"env_vars": env})
            self.started = True
        self.cls = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(_Actor)
        self.job_ref = ray.put(job)
        self.threads, self.timeout, self.n = options.threads, options.timeout, options.workers
        self.batch = options.batch or auto_batch(expected, options.workers)
        self.queue: deque = deque()  # (key, payload, solo)
        self.done: list[Outcome] = []
        self.running: dict = {}  # ObjectRef -> (actor index, items, deadline)
        self.actors = [self._new() for _ in range(self.n)]
        ray.get([a.pid.remote() for a in self.actors])  # start-up: every actor loaded

    def _new(self):
        return self.cls.remote(self.job_ref, self.threads)

    def submit(self, key: str, payload) -> None:
        """Queue only: batches are cut in ``collect``, when the queue is full or the input ends."""
        self.queue.append((key, payload, False))

    def busy(self) -> bool:
        return len(self.queue) >= self.n * self.batch or bool(self.done)

    def pending(self) -> int:
        return len(self.queue) + len(self.done) + sum(len(v[1]) for v in self.running.values())

    def collect(self) -> list[Outcome]:
        while not self.done and self.pending():
            self._dispatch()
            self._poll()
        out, self.done = self.done, []
        return out

    def close(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors, self.running = [], {}
        if self.started:
            self.ray.shutdown()
        if self.reaper is not None:
            self.reaper.release()

    # --- internals ---

    def _dispatch(self) -> None:
        """Keep ``_DEPTH`` batches queued on each actor, so that it never idles between calls."""
        per_actor: dict[int, list] = {}
        for i, _, d in self.running.values():
            per_actor.setdefault(i, []).append(d)
        for level in range(_DEPTH):  # round robin: every actor gets a batch before any gets a second
            for i in range(self.n):
                if not self.queue or len(per_actor.get(i, [])) > level:
                    continue
                items = [self.queue.popleft()]
                while not items[0][2] and self.queue and not self.queue[0][2] and len(items) < self.batch:
                    items.append(self.queue.popleft())
                deadline = None
                if self.timeout:  # the batch starts after those queued before it on this actor
                    start = max([time.monotonic()] + [d for d in per_actor.get(i, []) if d is not None])
                    deadline = start + len(items) * (self.timeout + _GRACE)
                ref = self.actors[i].run.remote([(k, p) for k, p, _ in items], self.timeout)
                self.running[ref] = (i, items, deadline)
                per_actor.setdefault(i, []).append(deadline)

    def _poll(self) -> None:
        ray = self.ray
        now = time.monotonic()
        deadlines = [d for _, _, d in self.running.values() if d is not None]
        wait_s = max(0.0, min(deadlines) - now) if deadlines else 1.0
        ready, _ = ray.wait(list(self.running), num_returns=1, timeout=min(wait_s, 1.0))
        rest = [r for r in self.running if r not in ready]
        if ready and rest:  # take everything else that has finished too
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        for ref in ready:
            if ref not in self.running:  # already handled with its actor's loss
                continue
            i, items, _ = self.running.pop(ref)
            try:
                self.done += ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - the actor died: its keys fail or go again alone
                self._lost(i, items, "crash", f"Ray worker died: {type(exc).__name__}")
        now = time.monotonic()
        for ref, (i, items, d) in list(self.running.items()):
            if ref in self.running and d is not None and now > d:
                self.running.pop(ref)
                self._lost(i, items, "timeout", f"timeout after {self.timeout:g} s (Ray worker killed)")

    def _lost(self, i: int, items: list, kind: str, message: str) -> None:
        """Actor i died or overran: replace it; the batch's keys fail (a single key) or go
        again one per call; batches queued behind it on the dead actor go again as they were."""
        try:
            self.ray.kill(self.actors[i])
        except Exception:  # noqa: BLE001 - already gone
            pass
        self.actors[i] = self._new()
        for ref, (j, other, _) in list(self.running.items()):
            if j == i:  # queued on the dead actor, never started
                self.running.pop(ref)
                self.queue.extendleft(reversed(other))
        if len(items) > 1:  # run each key alone, so that only the culprit fails
            self.queue.extendleft((k, p, True) for k, p, _ in reversed(items))
        else:
            self.done.append(Outcome(items[0][0], kind=kind, message=message))
