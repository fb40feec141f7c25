"""Best-of-R wall-clock timing shared by the benchmark scripts."""

from __future__ import annotations

import time


def timed(fn, repeat: int, clock=time.perf_counter):
    """Run ``fn`` ``repeat`` times; return (best time in s, result of the last call).

    ``clock``: wall time by default; ``time.process_time`` gives this process's CPU time, which
    a busy shared machine does not inflate (equal to wall time at one thread on an idle core).
    """
    best, result = float("inf"), None
    for _ in range(repeat):
        t = clock()
        result = fn()
        best = min(best, clock() - t)
    return best, result
