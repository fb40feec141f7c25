"""Backends on this machine: ``serial`` (in this process) and ``process`` (worker processes).

Every backend has the same four calls: ``submit(key, payload)`` queues a task,
``busy()`` says the queue is full, ``collect()`` waits until at least one task has
finished and returns the finished Outcomes, ``pending()`` counts tasks queued or running,
and ``close()`` stops every worker.

``process``: ``workers`` long-lived interpreters (:mod:`horm.jobs.worker`), each running one
task at a time. The parent keeps the clock: a task over ``timeout`` gets its worker
killed (SIGKILL) and fails as ``timeout``; a worker that dies mid-task fails its task as
``crash``. Either way a fresh worker takes the place on the next task.

Each worker runs in its own session (``start_new_session``; see
:func:`horm.jobs.worker.own_session` for why).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import deque
from multiprocessing.connection import Connection, wait

from horm.errors import HormError
from horm.jobs.spec import Job, JobOptions, Outcome
from horm.jobs.worker import THREAD_VARS, limit_threads, load, run_task

_BOOT = "from horm.jobs.worker import main; main()"
_MAX_BIRTH_DEATHS = 3  # workers in a row that die before they are ready: give up


class Serial:
    """In this process: load once, run each task at submit; SIGALRM enforces the timeout."""

    def __init__(self, job: Job, options: JobOptions):
        limit_threads(options.threads)
        self.job, self.timeout = job, options.timeout
        self.obj, self.load_error = load(job)
        self.done: list[Outcome] = []

    def submit(self, key: str, payload) -> None:
        self.done.append(run_task(self.job, self.obj, self.load_error, key, payload, self.timeout))

    def busy(self) -> bool:
        return bool(self.done)

    def pending(self) -> int:
        return len(self.done)

    def collect(self) -> list[Outcome]:
        out, self.done = self.done, []
        return out

    def close(self) -> None:
        pass


def _worker_env(threads: int) -> dict:
    env = dict(os.environ)
    env.update({v: str(threads) for v in THREAD_VARS})
    paths = [p for p in sys.path if p]  # so that the worker imports what this process imports
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


class _Worker:
    """One worker process and the task it runs (None when idle)."""

    def __init__(self, job: Job, threads: int, env: dict):
        mine, theirs = socket.socketpair()
        self.proc = subprocess.Popen([sys.executable, "-c", _BOOT, str(theirs.fileno()), str(os.getpid()),
                                      str(threads)], pass_fds=(theirs.fileno(),), env=env,
                                     start_new_session=True)
        theirs.close()
        self.conn = Connection(mine.detach())
        self.conn.send(job)
        self.ready = False
        self.task: tuple[str, float] | None = None  # (key, start time)

    def give(self, key: str, payload) -> None:
        self.conn.send((key, payload))
        self.task = (key, time.monotonic())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.conn.close()


class Processes:
    """``workers`` worker processes, each loading the job's object once."""

    def __init__(self, job: Job, options: JobOptions):
        self.job, self.timeout, self.n = job, options.timeout, options.workers
        self.env = _worker_env(options.threads)
        self.threads = options.threads
        self.queue: deque = deque()
        self.done: list[Outcome] = []
        self.births_dead = 0
        self.workers = [_Worker(job, self.threads, self.env) for _ in range(self.n)]
        while not all(w.ready for w in self.workers):  # start-up: every worker loaded
            self._poll(1.0)

    def submit(self, key: str, payload) -> None:
        self.queue.append((key, payload))
        self._dispatch()

    def busy(self) -> bool:
        return len(self.queue) >= self.n or bool(self.done)

    def pending(self) -> int:
        return len(self.queue) + len(self.done) + sum(w.task is not None for w in self.workers)

    def collect(self) -> list[Outcome]:
        while not self.done and self.pending():
            self._dispatch()
            self._poll(self._wait_time())
        out, self.done = self.done, []
        return out

    def close(self) -> None:
        for w in self.workers:
            try:
                if w.proc.poll() is None and w.task is None:
                    w.conn.send(None)
            except OSError:
                pass
        t_end = time.monotonic() + 2.0
        for w in self.workers:
            try:
                w.proc.wait(timeout=max(0.0, t_end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            w.kill()
        self.workers = []

    # --- internals ---

    def _dispatch(self) -> None:
        for i, w in enumerate(self.workers):
            if not self.queue:
                return
            if w.proc.poll() is not None and w.task is None:  # died while idle: replace
                w.kill()
                self.workers[i] = w = _Worker(self.job, self.threads, self.env)
            if w.ready and w.task is None:
                w.give(*self.queue.popleft())

    def _wait_time(self) -> float:
        if not self.timeout:
            return 1.0
        now = time.monotonic()
        left = [w.task[1] + self.timeout - now for w in self.workers if w.task is not None]
        return max(0.0, min(left + [1.0]))

    def _poll(self, seconds: float) -> None:
        by_conn = {w.conn: i for i, w in enumerate(self.workers)}
        for conn in wait(list(by_conn), timeout=seconds):
            i = by_conn[conn]
            w = self.workers[i]
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                self._lost(i, "crash", f"worker died (exit code {w.proc.wait()})")
                continue
            if isinstance(msg, tuple) and msg[0] == "ready":
                w.ready, self.births_dead = True, 0
            else:
                w.task = None
                self.done.append(msg)
        if self.timeout:
            now = time.monotonic()
            for i, w in enumerate(self.workers):
                if w.task is not None and now - w.task[1] > self.timeout:
                    self._lost(i, "timeout", f"timeout after {self.timeout:g} s (worker killed)")

    def _lost(self, i: int, kind: str, message: str) -> None:
        """Worker i is dead or is killed now: fail its task, start a replacement."""
        w = self.workers[i]
        w.kill()
        if w.task is not None:
            key, t0 = w.task
            self.done.append(Outcome(key, kind=kind, message=message, seconds=time.monotonic() - t0))
        elif not w.ready:
            self.births_dead += 1
            if self.births_dead >= _MAX_BIRTH_DEATHS:
                raise HormError(f"{self.births_dead} worker processes in a row died while starting "
                                f"(last exit code {w.proc.returncode})")
        self.workers[i] = _Worker(self.job, self.threads, self.env)
